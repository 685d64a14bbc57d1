"""Gaze regression backbones written in plain torch (torchvision / timm are optional, used only when importable).

``build_model(name)`` → ``nn.Module`` mapping (B, 3, H, W) images to (B, 2) (pitch, yaw) in radians:

* ``small``: a small CNN for CPU (4 conv-BN-ReLU stages, global average pool, Linear(2)),
* ``resnet18`` / ``resnet50``: ResNet (basic / bottleneck blocks) → Linear(2), the ETH-XGaze baseline recipe,
* ``timm:<name>`` / ``torchvision:<name>``: a backbone from an installed library (clear error when missing).
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A small CPU gaze CNN: stem + 4 stages of two conv-BN-ReLU (the first strided) → GAP → Linear(2).

    ``input_size``: images are average-pooled down to about this size first (e.g. 224 → 112), so the same
    model trains on xgaze224 batches at a quarter of the cost; None keeps the input resolution."""

    def __init__(self, width: int = 32, input_size: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.input_size = input_size
        w = width
        chans = [w, 2 * w, 4 * w, 8 * w]
        layers = [_conv_bn(3, w, 2)]
        cin = w
        for c in chans:
            layers += [_conv_bn(cin, c, 2), _conv_bn(c, c)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 2))
        self.head[-1].weight.data.mul_(0.1)
        self.head[-1].bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-1] > self.input_size:
            f = x.shape[-1] // self.input_size
            if f > 1:
                x = nn.functional.avg_pool2d(x, f)
        x = self.features(x)
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn2.weight)
        self.down = None
        if stride != 1 or cin != c:
            self.down = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1):
        super().__init__()
        cout = c * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, cout, 1, bias=False), nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn3.weight)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + idt)


class ResNet(nn.Module):
    """ResNet (He et al. 2016, torchvision layout, stride-2 in the 3x3 conv) with a Linear(2) gaze head."""

    def __init__(self, block, layers: list[int], width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i, n in enumerate(layers):
            c = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


def _external(name: str, pretrained: bool) -> nn.Module:
    lib, _, arch = name.partition(":")
    if lib == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError(f"model {name!r}: timm is not installed (use 'small', 'resnet18' or 'resnet50')") from None
        return timm.create_model(arch, pretrained=pretrained, num_classes=2)
    try:
        import torchvision
    except ImportError:
        raise ValueError(f"model {name!r}: torchvision is not installed (use 'small', 'resnet18' or "
                         "'resnet50')") from None
    m = torchvision.models.get_model(arch, weights="DEFAULT" if pretrained else None)
    if hasattr(m, "fc"):
        m.fc = nn.Linear(m.fc.in_features, 2)
    else:
        raise ValueError(f"model {name!r}: no .fc layer to replace with Linear(2)")
    return m


MODELS = ("small", "resnet18", "resnet50")


def build_model(name: str = "small", pretrained: bool = False, **kwargs) -> nn.Module:
    """A gaze regressor backbone by name (``small``, ``resnet18``, ``resnet50``, ``timm:<arch>``,
    ``torchvision:<arch>``). ``pretrained`` only applies to the external libraries."""
    if ":" in name:
        return _external(name, pretrained)
    if pretrained:
        raise ValueError(f"model {name!r}: pretrained weights are only available through timm:/torchvision: "
                         "backbones (this project ships no weights)")
    if name == "small":
        return SmallCNN(**kwargs)
    if name == "resnet18":
        return resnet18(**kwargs)
    if name == "resnet50":
        return resnet50(**kwargs)
    raise ValueError(f"model: unknown {name!r}; choose one of {MODELS} or 'timm:<arch>' / 'torchvision:<arch>'")
