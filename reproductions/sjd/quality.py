"""Image quality at full scale (C3, spec §4): FID against MS-COCO val2017 images and CLIP-Score.

Follows the official evaluation (``evaluation_metrics.py`` of the SJD repository): FID with the
2048-d pool features of the FID Inception network (TF "2015-12-05" weights; the repo calls
pytorch-fid, which ports the same weights), each image resized to 299 x 299 bilinear; CLIP-Score
with ``openai/clip-vit-base-patch16`` on the 299 x 299 images and the prompt (torchmetrics'
``CLIPScore``: 100 * max(cos(image, text), 0), averaged).

Neither pytorch-fid nor torchmetrics is a dependency of the suite (both need torchvision, and
pytorch-fid downloads its weights at run time), so both are written here:

* the Inception network is the TorchScript file ``inception-2015-12-05.pt`` (the one clean-fid and
  StyleGAN2-ADA's metrics load), called as ``net(images_uint8, return_features=True)``; it is found
  like a model folder through ``suite.models.locate.locate_model``;
* the Fréchet distance d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}) (Heusel et al.,
  2017, Eq. 6) with ``scipy.linalg.sqrtm``;
* CLIP is a transformers ``CLIPModel`` folder; images are preprocessed as CLIP's processor does
  (shorter side to 224 bicubic, centre crop, CLIP mean/std) in torch on the device.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from suite.errors import DataNotFoundError

INCEPTION_FILE = "inception-2015-12-05.pt"
FID_SIZE = 299  # repo: F.interpolate(images, size=(299, 299), mode="bilinear")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP preprocessing
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_299(img: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, 299, 299), bilinear (align_corners=False), as the repo feeds both metrics."""
    x = F.interpolate(img.float(), size=(FID_SIZE, FID_SIZE), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


class InceptionFeatures:
    """2048-d pool features of the FID Inception (TorchScript) for uint8 images."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        path = folder / INCEPTION_FILE
        if not path.is_file():
            raise DataNotFoundError(f"{path} missing; put the FID Inception TorchScript file {INCEPTION_FILE} "
                                    f"(the one clean-fid / StyleGAN2-ADA metrics use) there")
        with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.10; the published file is one
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location=device).eval()

    @torch.no_grad()
    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, 299, 299) uint8 on the device -> (B, D) float64 on the host."""
        return self.net(img, return_features=True).double().cpu()


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """FID between two feature sets (n, D): Heusel et al. (2017) Eq. 6, covariances with n - 1."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        return float("nan")
    import scipy.linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            covmean = scipy.linalg.sqrtm(s1 @ s2)
        except (scipy.linalg.LinAlgWarning, np.linalg.LinAlgError):
            covmean = np.full_like(s1, np.nan)
    if not np.isfinite(covmean).all():  # singular product (n <= D): offset the diagonals, as pytorch-fid does
        off = np.eye(s1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)  # sqrtm of a product of PSD matrices; imaginary parts are round-off
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class ClipScorer:
    """CLIP-Score = 100 * max(cos(E_image, E_text), 0) (Hessel et al., 2021; torchmetrics' CLIPScore)."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from transformers import CLIPModel

        from suite.models.hf import _tokenizer_class, _transformers

        if not (folder / "config.json").is_file():
            raise DataNotFoundError(f"no CLIP model at {folder} (config.json missing); copy a save_pretrained "
                                    f"folder of openai/clip-vit-base-patch16 there")
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.tok = _tokenizer_class(folder, _transformers()).from_pretrained(folder, local_files_only=True)
        self.device = device
        pre = folder / "preprocessor_config.json"
        conf = json.loads(pre.read_text()) if pre.is_file() else {}
        self.mean = torch.tensor(conf.get("image_mean", CLIP_MEAN), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(conf.get("image_std", CLIP_STD), device=device).view(1, 3, 1, 1)
        self.size = int(self.model.config.vision_config.image_size)
        self.max_len = int(self.model.config.text_config.max_position_embeddings)

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 4 / 5

    @torch.no_grad()
    def text(self, caption: str) -> torch.Tensor:
        enc = self.tok([caption], return_tensors="pt", truncation=True, max_length=self.max_len)
        e = self._pooled(self.model.get_text_features(input_ids=enc["input_ids"].to(self.device)))
        return F.normalize(e.float(), dim=-1)

    @torch.no_grad()
    def score(self, img: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """``img`` uint8 (B, 3, H, W) on the device, ``text_emb`` (B, D) -> (B,) scores on the host."""
        h, w = img.shape[-2:]
        s = self.size / min(h, w)
        x = F.interpolate(img.float(), size=(max(self.size, round(h * s)), max(self.size, round(w * s))),
                          mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)
        top, left = (x.shape[-2] - self.size) // 2, (x.shape[-1] - self.size) // 2
        x = x[..., top:top + self.size, left:left + self.size] / 255.0
        x = ((x - self.mean) / self.std).to(next(self.model.parameters()).dtype)
        e = F.normalize(self._pooled(self.model.get_image_features(pixel_values=x)).float(), dim=-1)
        return (100 * (e * text_emb).sum(-1)).clamp(min=0).cpu()


def write_inception_fixture(folder: Path) -> None:
    """A tiny random TorchScript network with the FID Inception's call signature (dry runs; stand-in)."""

    class TinyInception(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 5, stride=4)

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = img.float() / 127.5 - 1
            return torch.relu(self.conv(x)).mean((2, 3))

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(TinyInception()).save(str(folder / INCEPTION_FILE))


def write_clip_fixture(folder: Path) -> None:
    """A tiny random CLIPModel with a character tokenizer, saved like a checkpoint (dry runs; stand-in)."""
    from transformers import CLIPConfig, CLIPModel

    from suite.models.hf import tiny_char_tokenizer

    tok = tiny_char_tokenizer()
    conf = CLIPConfig(text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
                                   "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
                                   "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
                                   "bos_token_id": tok.eos_token_id},
                      vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                      projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(conf).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
