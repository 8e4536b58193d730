"""Text generation with a forward language model: the "writing bot" use of a pretrained LM."""
from __future__ import annotations

import torch

from ulmfit.pretrain.tokenizer import BOS, PAD, UNK, TextTokenizer


def continue_text(model: torch.nn.Module, tok: TextTokenizer, prompt: str, words: int = 50,
                  temperature: float = 0.8, top_k: int = 40, seed: int | None = None) -> str:
    """The prompt followed by a continuation of about `words` words sampled from a forward `model`.

    Words are counted by spaces for languages written with them, by tokens for those written without
    (Thai, Chinese, Japanese). Unknown, padding and `xxbos` tokens are never sampled.
    """
    device = next(model.parameters()).device
    spaced = tok.lang.word_joiner == " "
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    ids = tok.encode(prompt)
    new: list[int] = []
    model.eval()
    model.reset()
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device))[0][0, -1]
        while len(new) < words * 8 and (len(tok.decode(new).split()) if spaced else len(new)) < words:
            logits = logits.float().cpu()
            logits[[UNK, PAD, BOS]] = -float("inf")
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, len(logits))).values[-1]
                logits[logits < kth] = -float("inf")
            probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            new.append(nxt)
            logits = model(torch.tensor([[nxt]], device=device))[0][0, -1]
    return tok.decode(ids + new)
