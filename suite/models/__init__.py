"""Shared models: MLP/LeNet, small ConvNets, CIFAR ResNets and ResNet-18, a tiny ViT, a tiny transformer
LM (causal or bidirectional), a char/word tokenizer and a Hugging Face causal-LM adapter (``hf``)."""
from __future__ import annotations

from torch import nn

from suite.models.blocks import Attention, Block, FeedForward
from suite.models.convnet import ConvNet, conv2, conv4, conv6, small_convnet
from suite.models.mlp import MLP, lenet_300_100
from suite.models.resnet import CifarResNet, ResNet, resnet18, resnet20, resnet32, resnet56
from suite.models.tokenizer import Tokenizer
from suite.models.transformer import TransformerLM
from suite.models.vit import ViT


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        if not trainable_only or p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


__all__ = ["MLP", "lenet_300_100", "ConvNet", "conv2", "conv4", "conv6", "small_convnet", "CifarResNet",
           "ResNet", "resnet18", "resnet20", "resnet32", "resnet56", "ViT", "TransformerLM", "Tokenizer",
           "Attention", "FeedForward", "Block", "count_params"]
