"""The text rules are fastai's, written without importing fastai (which imports torch): each must give fastai's
output, on hand-made edge cases and on real text."""
from __future__ import annotations

import lzma

import fastai.text.core as fastai_text
import pytest

from ulmfit.langs import rules

SAME_AS_FASTAI = {
    "fix_html": fastai_text.fix_html,
    "replace_rep": fastai_text.replace_rep,
    "replace_wrep": fastai_text.replace_wrep,
    "spec_add_spaces": fastai_text.spec_add_spaces,
    "rm_useless_spaces": fastai_text.rm_useless_spaces,
    "fastai_replace_all_caps": fastai_text.replace_all_caps,
    "fastai_replace_maj": fastai_text.replace_maj,
}
EDGE_CASES = [
    "", "   ", "a", "Wow!!!! so goooood", "yes yes yes yes no", "the the the", "ok ok ok.", "a/b#c\\d",
    "Tom &amp; Jerry &#39;s nbsp; x #36;5 quot;hi quot; <br />line \\n next \\\"q\\\" <unk> 3 @.@ 5 a @-@ b ...",
    "THE END of THE STORY", "I am Ok", "ÜBER Alles", "x  y   z", "...... !!!!!!", "Héllo héllo héllo world",
]


@pytest.mark.parametrize("name", sorted(SAME_AS_FASTAI))
def test_rule_matches_fastai_on_edge_cases(name):
    for text in EDGE_CASES:
        assert rules.RULES[name](text) == SAME_AS_FASTAI[name](text), (name, text)


@pytest.mark.parametrize("name", sorted(SAME_AS_FASTAI))
def test_rule_matches_fastai_on_real_text(name, shared_data):
    with lzma.open(shared_data / "en/wikitext-2/valid.txt.xz", "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(3000)]
    for line in lines:
        assert rules.RULES[name](line) == SAME_AS_FASTAI[name](line), (name, line)


def test_special_tokens_are_fastais():
    assert rules.SPECIAL_TOKENS == fastai_text.defaults.text_spec_tok


def test_rules_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, ulmfit.langs.rules, ulmfit.pretrain.prepare; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("name", ["replace_all_caps", "replace_maj"])
def test_unicode_case_rules_are_fastais_on_ascii_text(name, shared_data):
    """The case rules mark capitals in any script; on ASCII text they are fastai's rules exactly."""
    with lzma.open(shared_data / "en/wikitext-2/valid.txt.xz", "rt", encoding="utf-8") as f:
        lines = [line for line in f if line.isascii()]
    lines += ["A", "AB c", "I", "X-RAY Mc", "  Ab  CD\tEf\n", "ABC's", "Ab1 A1b 1Ab", "THE END."]
    assert len(lines) > 2000
    for line in lines:
        assert rules.RULES[name](line) == SAME_AS_FASTAI[f"fastai_{name}"](line), line
