"""The guarded import of torchvision / open_clip works on the CPU build of torch."""

import torch
from PIL import Image

from vidcurate.transforms.models import import_open_clip, import_torchvision


def test_torchvision_transforms_work():
    tv = import_torchvision()
    from torchvision import transforms as T

    assert tv.__version__
    out = T.Compose([T.Resize(32), T.ToTensor()])(Image.new("RGB", (64, 48), (255, 0, 0)))
    assert out.shape == (3, 32, 42) and float(out[0].mean()) == 1.0


def test_open_clip_builds_and_encodes():
    open_clip = import_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=None, device="cpu")
    model.eval()
    with torch.no_grad():
        feats = model.encode_image(preprocess(Image.new("RGB", (64, 64))).unsqueeze(0))
    assert feats.shape == (1, 512)
