"""Caption metrics computed with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D."""

import logging
import shutil

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from .vocab import tokenize

logger = logging.getLogger(__name__)


def java_available() -> bool:
    return shutil.which("java") is not None


def _tokenized(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    if java_available():
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize(
            {key: [{"caption": c} for c in values] for key, values in captions.items()})
    # Without Java the Stanford tokenizer cannot run; this tokenizer also
    # lower-cases and drops punctuation, so scores stay close.
    return {key: [" ".join(tokenize(c)) for c in values] for key, values in captions.items()}


def score_captions(predictions: dict[str, str], references: dict[str, list[str]], *,
                   meteor: bool = True) -> dict[str, float | None]:
    """Score one predicted caption per image against its references.

    METEOR needs Java; without it, or with `meteor=False`, its value is None.
    """
    if set(predictions) != set(references):
        raise ValueError("predictions and references must cover the same images")
    results = _tokenized({k: [v] for k, v in predictions.items()})
    truths = _tokenized(references)

    bleu, _ = Bleu(4).compute_score(truths, results, verbose=0)
    scores = {f"bleu{n + 1}": float(bleu[n]) for n in range(4)}
    scores["meteor"] = None
    if meteor and java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        scores["meteor"] = float(Meteor().compute_score(truths, results)[0])
    elif meteor:
        logger.warning("METEOR skipped: it needs Java, and no 'java' was found on PATH")
    scores["rouge_l"] = float(Rouge().compute_score(truths, results)[0])
    scores["cider"] = float(Cider().compute_score(truths, results)[0])
    return scores
