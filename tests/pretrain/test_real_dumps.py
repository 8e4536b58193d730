"""`prepare_corpus` on the real dump excerpts in ../shared/data (the slow ones run with `-m slow`)."""
from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm

from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus

# Dump, language, articles kept by cleaning (train + valid): regression figures from this pipeline.
FAST = [("bg/wikipedia_xml/bgwiki-latest-pages-articles-shortened.xml.bz2", "bg"),
        ("en/wikipedia_xml/enwiki-table-markup.xml.bz2", "en")]
SLOW = [("en/wikipedia_xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2", "en"),
        ("bn/wikipedia_xml/bnwiki-truncated-100k.xml.xz", "bn"),
        ("ja/wikipedia_xml/jawiki-truncated-100k.xml.xz", "ja"),
        ("mr/wikipedia_xml/mrwiki-truncated-100k.xml.xz", "mr"),
        ("uk/wikipedia_xml/ukwiki-truncated-100k.xml.xz", "uk"),
        ("vi/wikipedia_xml/viwiki-truncated-100k.xml.xz", "vi")]


def check_corpus(out, meta, lang):
    assert meta["lang"] == lang
    for key in ("source", "tokenizer", "vocab_size", "dtype", "articles", "tokens"):
        assert key in meta
    for split in ("train", "valid"):
        ids = np.fromfile(out / f"{split}.bin", dtype=meta["dtype"])
        assert len(ids) == meta["tokens"][split]
        assert (ids == 2).sum() == meta["articles"][split]
    assert meta["tokens"]["train"] > 0


@pytest.mark.parametrize("name, lang", FAST)
def test_small_real_dumps(shared_data, tmp_path, name, lang):
    meta = prepare_corpus(lang, tmp_path, dump=shared_data / name, options=PrepareOptions(vocab_size=500),
                          workers=1)
    check_corpus(tmp_path, meta, lang)


@pytest.mark.slow
@pytest.mark.parametrize("name, lang", SLOW)
def test_every_real_dump(shared_data, tmp_path, name, lang):
    meta = prepare_corpus(lang, tmp_path, dump=shared_data / name, workers=2)
    check_corpus(tmp_path, meta, lang)
    assert meta["articles"]["valid"] > 0
    assert meta["source"]["truncated"] == (lang != "en")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    text = sp.decode(np.fromfile(tmp_path / "valid.bin", dtype=meta["dtype"])[1:200].tolist())
    assert len(text) > 100


@pytest.mark.slow
def test_vietnamese_word_level(shared_data, tmp_path):
    meta = prepare_corpus("vi", tmp_path, dump=shared_data / SLOW[-1][0],
                          options=PrepareOptions(tokenizer="word"), workers=2)
    check_corpus(tmp_path, meta, "vi")
    assert meta["vocab_size"] > 5000
