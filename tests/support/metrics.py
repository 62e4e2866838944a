"""Error rates for recognised text, shared by tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence


def levenshtein(a: Sequence, b: Sequence) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate, whitespace runs collapsed."""
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    return levenshtein(ref, hyp) / max(1, len(ref))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after Whisper's English normaliser (case, punctuation, numbers,
    spellings such as mister / mr)."""
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    ref, hyp = norm(reference).split(), norm(hypothesis).split()
    return levenshtein(ref, hyp) / max(1, len(ref))
