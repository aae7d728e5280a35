import torch

from latentcf.core import weights


def test_published_weights_download_quietly_and_say_none_when_unavailable(monkeypatch, capsys, caplog):
    def offline(url, **_):
        print(f'Downloading: "{url}"')
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with caplog.at_level("INFO", logger="latentcf"):
        assert weights.published_state_dict("https://example.org/w.pth") is None
    assert capsys.readouterr().out == "" and "not available" in caplog.text and "Downloading" in caplog.text


def test_published_weights_are_returned_when_they_can_be_had(monkeypatch):
    state = {"w": torch.ones(2)}
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **_: state)
    assert weights.published_state_dict("https://example.org/w.pth") is state
