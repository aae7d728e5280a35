"""The one exception type that the command line turns into a one-line error message."""


class LatentcfError(Exception):
    """A user-facing error: bad input, a missing file, an unavailable device.

    The command line prints ``error: <message>`` and exits with status 2; in a notebook it
    surfaces as an ordinary exception with the same message.
    """
