"""Training: DCGAN models, data, losses, checkpoints and the training loop (torch, torchvision)."""
