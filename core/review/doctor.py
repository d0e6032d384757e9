"""The data doctor: what is wrong with the photos, before training on them.

    photos of every split -> frozen MobileNetV2 embeddings (cached per photo)
    -> out-of-fold class probabilities (k-fold logistic regression, scikit-learn)
    -> cleanlab's Datalab: label issues, near duplicates, outliers, class imbalance
    -> exact duplicates by content hash
    -> the split again, each duplicate group found in one split (as training splits
       once the report is saved: core.data.splits reads its near-duplicate groups)
    -> leaks: duplicate groups whose photos still fall in different splits

Everything is ranked most suspicious first. The split checked is the one
PawLab trains with (core.data.splits), so a leak reported here is a photo
that would inflate the test score. PawLab keeps each group in one split of
what it splits itself, so a leak left is a copy across split folders the
person made, which PawLab uses as they are: the report says how to fix it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core import defaults
from core.data.dataset import DatasetError, DatasetInfo, Sample
from core.data.layout import Split
from core.data.splits import NearDuplicates, Splits, make_splits, split_dataset
from core.models.embeddings import EMBEDDING_SIZE, embed_files
from core.runs.recipes import ClassBalance

# Out-of-fold probabilities: this many folds (fewer for a class with fewer photos).
FOLDS = 5
LOGISTIC_C = 10.0  # inverse regularisation of the out-of-fold model
# cleanlab's near-duplicate cut-off: a pair whose distance is below this fraction of
# the median distance between nearest neighbours. Measured on 224 px embeddings of
# the planted test (tests/_planted.py): re-encoded, resized copies are at most 0.23,
# the one real duplicate pair 0.03, every other nearest pair at least 0.53.
# cleanlab's default of 0.13 missed one copy.
NEAR_DUPLICATE_THRESHOLD = 0.35
# How many label issues and outliers a report lists at most.
MAX_LISTED = 100
# A leak is a copy across split folders the person made (PawLab keeps groups together elsewhere).
LEAK_ADVICE = (
    "These copies are in split folders you made (train/, validation/, test/), which PawLab uses as "
    "they are: exclude all but one photo of each group, or move the copies into one folder. In one "
    "pool of class folders PawLab keeps every group in one split."
)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class LabelIssue:
    file: str
    split: str
    score: float  # cleanlab's label quality: low = likely mislabelled
    given: str
    suggested: str


@dataclass(frozen=True)
class Outlier:
    file: str
    split: str
    score: float  # cleanlab's outlier score: low = unlike the other photos
    flagged: bool = False  # cleanlab calls it an outlier; the others are the next in the ranking


@dataclass(frozen=True)
class DuplicateMember:
    file: str
    split: str


@dataclass(frozen=True)
class DuplicateGroup:
    files: list[DuplicateMember]  # the group's photos
    score: float  # 1.0 for byte-identical files, else cleanlab's near-duplicate score
    exact: bool

    @property
    def splits(self) -> set[str]:
        return {member.split for member in self.files}


@dataclass
class DoctorReport:
    classes: list[str]
    photos: int
    label_issues: list[LabelIssue] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    leaks: list[DuplicateGroup] = field(default_factory=list)
    leak_advice: str = ""  # LEAK_ADVICE when there are leaks
    outliers: list[Outlier] = field(default_factory=list)
    class_balance: dict[str, dict[str, int]] = field(default_factory=dict)  # {split: {class: n}}
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went

    def training_balance(self) -> ClassBalance:
        """What training will do about the training split's class sizes, with its default switch."""
        return ClassBalance(self.class_balance.get(Split.TRAIN, {}))

    def to_dict(self) -> dict:
        return asdict(self)


def report_from_dict(data: dict) -> DoctorReport | None:
    """A report saved with ``to_dict``; None when it is not one (damaged or older)."""

    def group(entry: dict) -> DuplicateGroup:
        return DuplicateGroup([DuplicateMember(**member) for member in entry["files"]], entry["score"], entry["exact"])

    try:
        return DoctorReport(
            classes=list(data["classes"]),
            photos=int(data["photos"]),
            label_issues=[LabelIssue(**entry) for entry in data["label_issues"]],
            duplicates=[group(entry) for entry in data["duplicates"]],
            leaks=[group(entry) for entry in data["leaks"]],
            leak_advice=str(data.get("leak_advice", "")),  # older reports have none
            outliers=[Outlier(**entry) for entry in data["outliers"]],
            class_balance=data["class_balance"],
            seconds=data.get("seconds", {}),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _labelled_photos(splits: Splits) -> list[Sample]:
    return [sample for members in splits.as_dict().values() for sample in members]


def _split_names(samples: list[Sample], splits: Splits) -> list[str]:
    """The split each sample is in."""
    split_of = {sample.path: str(split) for split, members in splits.as_dict().items() for sample in members}
    return [split_of[sample.path] for sample in samples]


def out_of_fold_probabilities(embeddings: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Each photo's class probabilities from a model that never saw it (k-fold).

    Logistic regression on L2-normalised embeddings. Chosen on a planted copy
    of cats and dogs (benchmarks/bench_doctor.py): 19 of 20 moved photos in the
    top 30 against 16 for standardised features with strong regularisation,
    and 3 s instead of 20 s for 3000 photos.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    folds = max(2, min(FOLDS, int(np.bincount(labels).min())))
    model = make_pipeline(Normalizer(), LogisticRegression(C=LOGISTIC_C, max_iter=3000))
    return cross_val_predict(
        model, embeddings, labels, method="predict_proba", cv=StratifiedKFold(folds, shuffle=True, random_state=seed)
    )


def _exact_duplicates(keys: list[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    return [members for members in groups.values() if len(members) > 1]


def _near_duplicate_groups(lab, scores: np.ndarray) -> list[tuple[list[int], float]]:
    """cleanlab's near-duplicate sets as disjoint groups, each with its best score."""
    sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
    seen: set[int] = set()
    groups = []
    for index, members in enumerate(sets):
        group = sorted({index, *map(int, members)})
        if len(group) < 2 or index in seen:
            continue
        seen.update(group)
        groups.append((group, float(1.0 - scores[group].min())))
    return groups


def diagnose(
    root: str | Path, *, seed: int = defaults.SEED, image_size: int = EMBEDDING_SIZE, progress: Progress | None = None
) -> DoctorReport:
    """Find label issues, duplicates, leaks, outliers and class imbalance in a dataset."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    info, splits = split_dataset(root, seed)
    if len(splits.classes) < 2:
        raise DatasetError("The data doctor needs at least two classes (two class folders).")
    samples = _labelled_photos(splits)
    paths = [sample.path for sample in samples]
    labels = np.array([sample.label for sample in samples])
    keys = [info.content_keys[path] for path in paths]  # the scan's sha256
    timings["scan_and_hash"] = time.perf_counter() - start

    mark = time.perf_counter()
    embeddings = embed_files(
        paths,
        image_size,
        keys=keys,
        progress=(lambda done, total: progress("features", done, total)) if progress else None,
    )
    timings["features"] = time.perf_counter() - mark

    mark = time.perf_counter()
    if progress:
        progress("analysis", 0, 1)
    probabilities = out_of_fold_probabilities(embeddings, labels, seed)
    report = _find_issues(samples, labels, keys, embeddings, probabilities, info, seed)
    timings["analysis"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    report.seconds = {name: round(value, 2) for name, value in timings.items()}
    if progress:
        progress("analysis", 1, 1)
    return report


def _find_issues(samples, labels, keys, embeddings, probabilities, info: DatasetInfo, seed: int) -> DoctorReport:
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(
        features=embeddings,
        pred_probs=probabilities,
        issue_types={
            "label": {},
            "outlier": {},
            "near_duplicate": {"threshold": NEAR_DUPLICATE_THRESHOLD},
            "class_imbalance": {},
        },
    )
    label_table = lab.get_issues("label")
    outlier_table = lab.get_issues("outlier")
    near_scores = lab.get_issues("near_duplicate")["near_duplicate_score"].to_numpy()
    exact_groups = _exact_duplicates(keys)
    exact_files = {index for members in exact_groups for index in members}
    near_groups = [
        (members, score)
        for members, score in _near_duplicate_groups(lab, near_scores)
        if not set(members) <= exact_files
    ]
    # Split as training will once this report is saved (it reads these near groups back):
    # each group in one split, so a leak left is a copy across split folders the person made.
    near = NearDuplicates([[samples[i].path for i in members] for members, _ in near_groups], "this review")
    splits = make_splits(info, seed, near_duplicates=near)
    split_of = _split_names(samples, splits)
    classes = splits.classes

    # A photo of something else is an outlier, not a cat filed under dogs:
    # it is listed there, and kept out of the label issues it would crowd.
    # Ranked: every photo whose out-of-fold prediction disagrees with its folder.
    is_outlier = outlier_table["is_outlier_issue"].to_numpy()
    label_scores = label_table["label_score"].to_numpy()
    suggested = probabilities.argmax(axis=1)
    flagged = np.flatnonzero((suggested != labels) & ~is_outlier)
    label_issues = sorted(
        (
            LabelIssue(samples[i].path, split_of[i], float(label_scores[i]), classes[labels[i]], classes[suggested[i]])
            for i in flagged
        ),
        key=lambda issue: issue.score,
    )[:MAX_LISTED]

    outlier_scores = outlier_table["outlier_score"].to_numpy()
    outliers = [
        Outlier(samples[i].path, split_of[i], float(outlier_scores[i]), bool(is_outlier[i]))
        for i in np.argsort(outlier_scores)[:MAX_LISTED]
    ]

    def group(members, score, exact):
        return DuplicateGroup([DuplicateMember(samples[i].path, split_of[i]) for i in members], round(score, 4), exact)

    exact = [group(members, 1.0, True) for members in exact_groups]
    near_found = [group(members, score, False) for members, score in near_groups]
    duplicates = sorted(exact + near_found, key=lambda g: -g.score)
    leaks = [g for g in duplicates if len(g.splits) > 1]
    return DoctorReport(
        classes=list(classes),
        photos=len(samples),
        label_issues=label_issues,
        duplicates=duplicates,
        leaks=leaks,
        leak_advice=LEAK_ADVICE if leaks else "",
        outliers=outliers,
        class_balance=splits.counts(),
    )
