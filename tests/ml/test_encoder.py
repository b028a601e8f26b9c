import torch
from torchvision.models import ResNet50_Weights

from ml.encoder import GridEncoder, build_classifier, lite0_weights_path, lite0_state_dict_for_timm, preprocess

from .conftest import open_rgb

# Class names only; no weights are downloaded.
IMAGENET_CLASSES = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
DOG_BREEDS = set(IMAGENET_CLASSES[151:269])


def test_lite0_mapping_covers_every_timm_parameter():
    import timm

    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    renamed = lite0_state_dict_for_timm(source)
    expected = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert set(renamed) == set(expected)
    for key, tensor in renamed.items():
        assert tensor.shape == expected[key].shape, key


def test_lite0_classifies_skier_with_dog(datasets):
    """With the renamed weights, ImageNet's top 5 for the skier photo name a dog or a ski."""
    model = build_classifier("efficientnet_lite0")
    image = open_rgb(datasets / "coco-mini/train2017/000000030752.jpg")
    pixels = preprocess("efficientnet_lite0")(image)[None]
    with torch.inference_mode():
        top5 = model(pixels).topk(5).indices[0].tolist()
    names = {IMAGENET_CLASSES[i] for i in top5}
    assert names & (DOG_BREEDS | {"ski"}), names


def test_grid_encoder_returns_7x7_grid(datasets):
    encoder = GridEncoder("efficientnet_lite0")
    image = open_rgb(datasets / "coco-mini/train2017/000000000790.jpg")
    with torch.inference_mode():
        grid = encoder(preprocess("efficientnet_lite0")(image)[None])
    assert grid.shape == (1, 49, 1280)


def test_grid_encoder_stays_frozen_in_train_mode():
    encoder = GridEncoder("efficientnet_lite0")
    encoder.train()
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())


def test_resnet50_backbone_loads_local_weights(tmp_path):
    """ResNet-50 works from a local state dict file and also yields a 7x7 grid."""
    from torchvision.models import resnet50

    weights = tmp_path / "resnet50.pth"
    torch.save(resnet50().state_dict(), weights)
    encoder = GridEncoder("resnet50", weights)
    with torch.inference_mode():
        grid = encoder(torch.zeros(1, 3, 224, 224))
    assert grid.shape == (1, 49, 2048)


def test_resnet50_without_weights_names_the_setting():
    try:
        GridEncoder("resnet50")
    except ValueError as exc:
        assert "backbone_weights" in str(exc)
    else:
        raise AssertionError("resnet50 without weights was accepted")
