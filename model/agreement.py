"""How the model's results agree with the clinicians' readings recorded on them: the model measured
on the site's own films, which neither the validation split nor the external half is.

A reading is a clinician's own call on the film, not a confirmed diagnosis, so the measures are named
as agreement with a non-reference standard: positive agreement (films read as the positive class that
the model called so), negative agreement, overall agreement, each with a Wilson 95 % interval, and the
ROC AUC of the model's probability against the readings. With enough readings of each class, the
threshold the model's own rule would choose on these films is shown beside the served one: the size
of the shift at this site, to inform a retraining; the served threshold changes only with a new model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from model.metrics import choose_threshold, confusion, roc_auc
from model.store import PredictionRecord

MIN_READINGS_PER_CLASS = 20  # fewer: no rule threshold is computed (it would rest on a film or two)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion (None without observations)."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _share(successes: int, n: int) -> dict[str, Any]:
    return {"value": successes / n if n else None, "n": n, "interval_95": wilson_interval(successes, n)}


def version_agreement(records: list[PredictionRecord], positive: str) -> dict[str, Any]:
    """Agreement of one model version's stored labels and probabilities with the readings on them."""
    truth = np.array([r.reading == positive for r in records])
    called = np.array([r.label == positive for r in records])
    probs = np.array([r.probability for r in records])
    cm = confusion(truth, called)
    read_positive, read_negative = cm["tp"] + cm["fn"], cm["tn"] + cm["fp"]
    auc = roc_auc(truth, probs)
    summary: dict[str, Any] = {
        "model_version": records[0].model_version,
        "threshold": records[0].threshold,
        "read": len(records),
        "read_positive": read_positive,
        "read_negative": read_negative,
        "confusion_matrix": cm,  # tp: called and read positive; fp: called positive, read negative; ...
        "positive_agreement": _share(cm["tp"], read_positive),
        "negative_agreement": _share(cm["tn"], read_negative),
        "overall_agreement": _share(cm["tp"] + cm["tn"], len(records)),
        "roc_auc": None if math.isnan(auc) else auc,
        "rule_threshold": None,
    }
    if min(read_positive, read_negative) >= MIN_READINGS_PER_CLASS:
        threshold = choose_threshold(truth, probs)
        called_at = probs >= threshold
        summary["rule_threshold"] = {"threshold": threshold, "positive_agreement": float(np.mean(called_at[truth])),
                                     "negative_agreement": float(np.mean(~called_at[~truth]))}
    return summary


def agreement(records: Iterable[PredictionRecord], positive: str, served_version: str) -> list[dict[str, Any]]:
    """One summary per model version among the records with a reading: the served version first,
    then the others by number of readings."""
    by_version: dict[str, list[PredictionRecord]] = defaultdict(list)
    for record in records:
        if record.reading:
            by_version[record.model_version].append(record)
    ordered = sorted(by_version.values(), key=lambda rs: (rs[0].model_version != served_version, -len(rs)))
    return [{**version_agreement(rs, positive), "served": rs[0].model_version == served_version} for rs in ordered]
