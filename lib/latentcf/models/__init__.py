"""Networks: coupling flows for toy data (``flows``), the multi-scale RealNVP for images
(``image_flows``), the MNIST classifiers and autoencoders (``mnist_nets``) and their cached training
(``mnist_training``), the Galaxy10 WAE-MMD and PatchGAN (``wae``) and VGG16(-BN) with its perceptual loss
(``vgg``)."""
