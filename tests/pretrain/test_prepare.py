"""`prepare_corpus` end to end on small dumps made here: outputs, splits, caps, caching and bad input."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import sentencepiece as spm

from tests.pretrain.dumps import article, dump_xml, multistream, write_dump
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.corpus import Corpus
from ulmfit.pretrain.prepare import PrepareOptions, doc_key, prepare_corpus, unit_hash

TITLES = [f"Subject {chr(65 + i)}{j}" for i in range(6) for j in range(5)]  # 30 articles


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("dump") / "enwiki-20240101-pages-articles.xml"
    pages = [{"title": t, "text": article(t.replace(" ", ""))} for t in TITLES]
    pages += [{"title": "Moved", "text": "#REDIRECT [[Subject A0]]", "redirect": "Subject A0"},
              {"title": "Talk:Subject A0", "text": "talk " * 80, "ns": 1},
              {"title": "Tiny", "text": "Too short."},
              {"title": "Subject (disambiguation)", "text": "Subject may be:\n* [[Subject A0]]\n{{disambiguation}}"}]
    return write_dump(path, pages)


def test_sentencepiece_corpus(dump, tmp_path):
    out = tmp_path / "corpus"
    meta = prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    assert {p.name for p in out.iterdir()} >= {"train.bin", "valid.bin", "spm.model", "meta.json", "text"}
    assert json.loads((out / "meta.json").read_text()) == meta
    assert meta["lang"] == "en" and meta["tokenizer"] == "sentencepiece" and meta["dtype"] == "uint16"
    assert meta["source"]["dbname"] == "enwiki" and meta["source"]["dump_date"] == "20240101"
    assert meta["articles"]["train"] + meta["articles"]["valid"] == 30
    assert meta["articles"]["valid"] >= 1
    assert meta["skipped"] == {"redirect": 1, "other_namespace": 1, "short": 1, "disambiguation": 1}

    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    assert meta["vocab_size"] == sp.get_piece_size() <= 300
    assert [sp.id_to_piece(i) for i in range(9)] == meta["special_tokens"][:9]
    for split in ("train", "valid"):
        ids = np.fromfile(out / f"{split}.bin", dtype=np.uint16)
        assert len(ids) == meta["tokens"][split]
        assert (ids == 2).sum() == meta["articles"][split]  # one xxbos per article
        assert ids[0] == 2 and ids.max() < meta["vocab_size"]
    first = np.fromfile(out / "train.bin", dtype=np.uint16)[1:40].tolist()
    assert sp.decode(first).startswith("Subject")


@pytest.mark.parametrize("workers", [1, 2])
def test_multistream_dump_gives_the_corpus_of_the_plain_dump(dump, tmp_path, workers, monkeypatch, caplog):
    """Workers that decompress their own ranges of a multistream dump make the same corpus as one reader."""
    from ulmfit.pretrain import multistream as ms

    monkeypatch.setattr(ms, "TARGET_BYTES", 1)  # a range per stream
    pages = [{"title": t, "text": article(t.replace(" ", ""))} for t in TITLES]
    pages += [{"title": "Moved", "text": "#REDIRECT [[Subject A0]]", "redirect": "Subject A0"}]
    xml = dump_xml(pages)
    plain = tmp_path / "enwiki-20240101-pages-articles.xml"
    plain.write_text(xml, encoding="utf-8")
    data, index, _ = multistream(xml, per_stream=4)
    multi = tmp_path / "enwiki-20240101-pages-articles-multistream.xml.bz2"
    multi.write_bytes(data)
    options = PrepareOptions(tokenizer="word", min_freq=1)
    a = prepare_corpus("en", tmp_path / "a", dump=plain, options=options, workers=1)
    caplog.set_level("INFO")
    b = prepare_corpus("en", tmp_path / "b", dump=multi, options=options, workers=workers)
    assert "9 streams after the header (from a scan) in 9 ranges" in caplog.text
    assert (a["articles"], a["tokens"], a["skipped"]) == (b["articles"], b["tokens"], b["skipped"])
    assert b["source"]["pages"] == len(pages) and b["source"]["dbname"] == "enwiki"
    for split in ("train", "valid"):
        assert list(Corpus(tmp_path / "a").read_docs(split)) == list(Corpus(tmp_path / "b").read_docs(split))
        assert (tmp_path / "a" / f"{split}.bin").read_bytes() == (tmp_path / "b" / f"{split}.bin").read_bytes()


def test_split_is_by_title_hash(dump, tmp_path):
    out = tmp_path / "corpus"
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=300, valid_frac=0.3), workers=1)
    valid = [doc_key(d) for d in Corpus(out).read_docs("valid")]
    train = [doc_key(d) for d in Corpus(out).read_docs("train")]
    assert sorted(valid + train) == sorted(TITLES)
    assert all(unit_hash(t, "split") < 0.3 for t in valid)
    assert all(unit_hash(t, "split") >= 0.3 for t in train)


def test_workers_give_the_same_corpus(dump, tmp_path):
    # Word level end to end; SentencePiece training itself is not bit-reproducible, so compare its input.
    opts = PrepareOptions(tokenizer="word", min_freq=2)
    one = prepare_corpus("en", tmp_path / "one", dump=dump, options=opts, workers=1)
    two = prepare_corpus("en", tmp_path / "two", dump=dump, options=opts, workers=2)
    assert one["tokens"] == two["tokens"]
    for name in ("train.bin", "valid.bin", "vocab.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    for split in ("train", "valid"):
        assert list(Corpus(tmp_path / "one").read_docs(split)) == list(Corpus(tmp_path / "two").read_docs(split))


def test_max_tokens_caps_the_train_split(dump, tmp_path):
    full = prepare_corpus("en", tmp_path / "full", dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    cap = full["tokens"]["train"] // 3
    capped = prepare_corpus("en", tmp_path / "cap", dump=dump,
                            options=PrepareOptions(vocab_size=300, max_tokens=cap), workers=1)
    assert capped["tokens"]["train"] <= cap
    assert capped["tokens"]["train"] > cap // 2
    assert capped["sample_rate"] < 1
    assert capped["tokens"]["valid"] == full["tokens"]["valid"]  # the valid split is not sampled
    words = prepare_corpus("en", tmp_path / "words", dump=dump,
                           options=PrepareOptions(tokenizer="word", min_freq=2, max_tokens=cap), workers=1)
    assert cap // 2 < words["tokens"]["train"] <= cap
    assert words["articles"]["valid"] == full["articles"]["valid"]


def test_word_corpus(dump, tmp_path):
    out = tmp_path / "words"
    meta = prepare_corpus("en", out, dump=dump, options=PrepareOptions(tokenizer="word", min_freq=2), workers=1)
    itos = json.loads((out / "vocab.json").read_text())
    assert itos[:9] == meta["special_tokens"] and len(itos) == meta["vocab_size"] and len(itos) % 8 == 0
    assert "xxmaj" in itos and "subject" in itos and "Subject" not in itos  # case went into xxmaj
    assert meta["rules"][-3:] == ["replace_all_caps", "replace_maj", "lowercase"]
    ids = np.fromfile(out / "train.bin", dtype=np.uint16)
    words = [itos[i] for i in ids[:6]]
    assert words[:3] == ["xxbos", "xxmaj", "subject"]
    assert not (out / ".tokens-tmp").exists()


def test_word_level_needs_a_word_tokenizer(dump, tmp_path):
    with pytest.raises(UlmfitError, match="no word tokenizer.*--tokenizer sentencepiece"):
        prepare_corpus("ja", tmp_path / "ja", dump=dump, options=PrepareOptions(tokenizer="word"))
    assert not (tmp_path / "ja").exists()


def test_stages_are_cached(dump, tmp_path, caplog):
    out = tmp_path / "c"
    opts = PrepareOptions(vocab_size=300)
    prepare_corpus("en", out, dump=dump, options=opts, workers=1)
    stamp = lambda name: (out / name).stat().st_mtime_ns  # noqa: E731
    before = {n: stamp(n) for n in ("text/train.txt.gz", "spm.model", "train.bin", "meta.json")}

    caplog.set_level("INFO")
    prepare_corpus("en", out, dump=dump, options=opts, workers=1)
    assert "already prepared" in caplog.text
    assert {n: stamp(n) for n in before} == before

    caplog.clear()
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=200), workers=1)
    assert "not reading the source again" in caplog.text
    assert stamp("text/train.txt.gz") == before["text/train.txt.gz"]
    assert stamp("spm.model") != before["spm.model"] and stamp("train.bin") != before["train.bin"]

    mid = {n: stamp(n) for n in before}
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=200, max_tokens=5000), workers=1)
    assert stamp("spm.model") == mid["spm.model"] and stamp("train.bin") != mid["train.bin"]

    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=200, min_chars=50), workers=1)
    assert stamp("text/train.txt.gz") != before["text/train.txt.gz"]

    caplog.clear()
    os.utime(dump, ns=(1, 1))  # a changed source redoes everything
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=200, min_chars=50), workers=1)
    assert "not reading the source again" not in caplog.text and "cleaned 30 articles" in caplog.text


def test_max_tokens_below_one_article(dump, tmp_path):
    with pytest.raises(UlmfitError, match="no article fits in --max-tokens 5"):
        prepare_corpus("en", tmp_path / "c", dump=dump, options=PrepareOptions(vocab_size=300, max_tokens=5),
                       workers=1)
    assert not (tmp_path / "c" / "meta.json").exists()


def test_plain_text_source(tmp_path):
    src = tmp_path / "texts"
    src.mkdir()
    blocks = [f"Document {i} begins here.\n" + " ".join(f"w{i}x{j}" for j in range(60)) for i in range(12)]
    (src / "a.txt").write_text("\n\n".join(blocks[:6]) + "\n", encoding="utf-8")
    (src / "b.txt").write_text("\n\n\n".join(blocks[6:]) + "\n\nshort\n", encoding="utf-8")
    meta = prepare_corpus("en", tmp_path / "c", text=[src], options=PrepareOptions(vocab_size=200), workers=1)
    assert meta["source"]["type"] == "text"
    assert meta["articles"]["train"] + meta["articles"]["valid"] == 12
    assert meta["skipped"] == {"short": 1}


def test_local_hub_dataset_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"id": [str(i) for i in range(10)], "title": [f"Artikel {i}" for i in range(10)],
            "text": [f"Artikel {i} ist ein Text.\n\n" + " ".join(f"wort{i}{j}" for j in range(60)) for i in range(10)]}
    folder = tmp_path / "wiki"
    folder.mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(str(folder / "train-00000.parquet"))
    meta = prepare_corpus("de", tmp_path / "c", hf_dataset=str(folder), options=PrepareOptions(vocab_size=200),
                          workers=1)
    assert meta["source"]["type"] == "hf-dataset"
    assert meta["articles"]["train"] + meta["articles"]["valid"] == 10
    assert next(Corpus(tmp_path / "c").read_docs("train")).startswith("Artikel")


def test_generic_language(dump, tmp_path, caplog):
    with pytest.raises(UlmfitError, match="is a dump of enwiki, not of eowiki.*--force-lang"):
        prepare_corpus("eo", tmp_path / "eo", dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    assert not (tmp_path / "eo" / "meta.json").exists()
    caplog.set_level("WARNING")
    meta = prepare_corpus("eo", tmp_path / "eo", dump=dump, options=PrepareOptions(vocab_size=300), workers=1,
                          force_lang=True)
    assert meta["lang"] == "eo" and meta["generic_adapter"] is True
    assert "dump of enwiki, read as eo" in caplog.text


@pytest.mark.parametrize("case", ["missing", "not-xml", "empty", "no-articles", "unknown-lang", "bad-option"])
def test_bad_input_leaves_nothing_finished(tmp_path, case):
    out = tmp_path / "out"
    dump = tmp_path / "dump.xml"
    kwargs = {"dump": dump}
    lang, options, message = "en", PrepareOptions(vocab_size=300), ""
    if case == "missing":
        message = "does not exist"
    elif case == "not-xml":
        dump.write_text("hello, I am a plain text file\n")
        message = "not a MediaWiki XML dump"
    elif case == "empty":
        dump.write_bytes(b"")
        message = "is empty"
    elif case == "no-articles":
        write_dump(dump, [{"title": "R", "text": "#REDIRECT [[X]]", "redirect": "X"},
                          {"title": "User:Me", "text": "me " * 100, "ns": 2}])
        message = "no articles.*1 redirect"
    elif case == "unknown-lang":
        write_dump(dump, [{"title": "A", "text": article("A")}])
        lang, message = "qqq", "no Wikipedia with the code 'qqq'"
    elif case == "bad-option":
        write_dump(dump, [{"title": "A", "text": article("A")}])
        with pytest.raises(UlmfitError, match="valid-frac"):
            PrepareOptions(valid_frac=1.5)
        options, message = PrepareOptions(rules=["no_such_rule"]), "unknown text rule"
    with pytest.raises(UlmfitError, match=message):
        prepare_corpus(lang, out, options=options, workers=1, **kwargs)
    assert not out.exists()


def test_unwritable_output(dump, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UlmfitError, match="cannot write to the output directory"):
        prepare_corpus("en", blocker / "corpus", dump=dump, workers=1)
    with pytest.raises(UlmfitError, match="is a file"):
        prepare_corpus("en", blocker, dump=dump, workers=1)


def test_failure_after_extraction_keeps_cache_but_no_meta(dump, tmp_path, monkeypatch, caplog):
    import ulmfit.pretrain.prepare as prepare

    def boom(*a, **k):
        raise UlmfitError("tokenizer failed")

    out = tmp_path / "c"
    with monkeypatch.context() as m:
        m.setattr(prepare, "_train_sentencepiece", boom)
        with pytest.raises(UlmfitError, match="tokenizer failed"):
            prepare_corpus("en", out, dump=dump, workers=1)
    assert not out.exists()  # nothing that looks finished
    assert (tmp_path / ".c.partial" / "text" / "train.txt.gz").exists()  # what was done waits for the next try
    caplog.set_level("INFO")
    prepare_corpus("en", out, dump=dump, workers=1)
    assert "not reading the source again" in caplog.text
    assert Corpus.open(out).meta["articles"]["train"] > 0 and not (tmp_path / ".c.partial").exists()


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", ["empty-dump", "not-a-dump", "tokenizer-fails", "interrupted"])
def test_failed_run_leaves_the_finished_corpus_as_it_was(dump, tmp_path, monkeypatch, fault):
    import ulmfit.pretrain.prepare as prepare

    out = tmp_path / "c"
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    before = _files(out)
    bad, options = dump, PrepareOptions(vocab_size=200)
    if fault == "empty-dump":
        bad = tmp_path / "empty.xml"
        bad.write_bytes(b"")
    elif fault == "not-a-dump":
        bad = tmp_path / "notes.xml"
        bad.write_text("<notes><note>hello</note></notes>")
    else:
        def boom(*a, **k):
            raise KeyboardInterrupt if fault == "interrupted" else UlmfitError("tokenizer failed")

        monkeypatch.setattr(prepare, "_train_sentencepiece", boom)
    with pytest.raises((UlmfitError, KeyboardInterrupt)):
        prepare_corpus("en", out, dump=bad, options=options, workers=1)
    assert _files(out) == before
    Corpus.open(out)


def test_a_second_run_on_the_same_out_is_refused(dump, tmp_path):
    from ulmfit.files import output_lock

    with output_lock(tmp_path / "c"):
        with pytest.raises(UlmfitError, match=f"in use by PID {os.getpid()}"):
            prepare_corpus("en", tmp_path / "c", dump=dump, workers=1)


def test_a_swap_cut_short_is_recovered(dump, tmp_path):
    out = tmp_path / "c"
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    before = _files(out)
    out.rename(tmp_path / ".c.old")  # a crash between the two renames of the swap
    prepare_corpus("en", out, dump=dump, options=PrepareOptions(vocab_size=300), workers=1)
    assert _files(out) == before and not (tmp_path / ".c.old").exists()


@pytest.mark.parametrize("when", [pytest.param("at once", marks=pytest.mark.slow), "after cleaning"])
def test_kill_9_then_the_same_command_gives_the_same_corpus(dump, tmp_path, when):
    """A `prepare` killed with SIGKILL at any moment: the same command again reaches the corpus an uninterrupted run
    writes (the word level is deterministic to the byte; SentencePiece's trainer is not)."""
    import signal
    import subprocess
    import sys
    import time

    def command(out):
        return [sys.executable, "-m", "ulmfit", "-q", "prepare", "en", "--dump", str(dump), "--out", str(out),
                "--tokenizer", "word", "--min-freq", "1", "--workers", "1"]

    subprocess.run(command(tmp_path / "whole"), check=True, capture_output=True)
    out = tmp_path / "cut"
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stamps = tmp_path / ".cut.partial" / ".stages.json"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if when == "at once" and (tmp_path / ".cut.lock").exists():
            break
        if when == "after cleaning" and stamps.exists() and "extract" in stamps.read_text():
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "meta.json").exists() or proc.returncode == 0
    subprocess.run(command(out), check=True, capture_output=True)
    whole, cut = _files(tmp_path / "whole"), _files(out)
    assert whole.keys() == cut.keys()
    for name in whole:
        if name.name not in ("meta.json", "stats.json"):  # these record times
            assert whole[name] == cut[name], name
