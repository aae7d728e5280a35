"""Scores of counterfactuals: Morpho-MNIST morphometrics (``morpho``), image similarity (``image_metrics``:
SSIM, PSNR, LPIPS), validity (``classification``: target accuracy, macro AUROC, mean and SEM), the verdict of
an independent SVM (``oracle``), realism (``realism``: IM1, nearest neighbours) and distances (``proximity``)."""
