"""Scores of counterfactuals: Morpho-MNIST morphometrics (``morpho``), image similarity (``image_metrics``:
SSIM, PSNR, LPIPS) and validity (``classification``: target accuracy, macro AUROC, mean and SEM)."""
