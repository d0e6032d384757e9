"""Dataset page, part 2: the overview (counts, skipped files) and the photo browser.

Everything slow is cached (pages/_common/photos.py): the scan per dataset folder
(and its state on disk), each thumbnail per file path and modification time.
A rerun of the page therefore only looks up what it shows.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.dataset import DatasetInfo, Sample
from core.data.images import ImageError
from core.data.splits import SplitRule, Splits
from pages._common.photos import large_photo, thumbnail
from pages._common.text import code, md

PHOTOS_PER_PAGE = 24
THUMBNAIL_WIDTH = 110  # pixels on screen: five to a row beside the enlarged photo in a 1280 px window
ALL_SPLITS = "all"


# --- Overview -------------------------------------------------------------


def show_overview(info: DatasetInfo, splits: Splits) -> None:
    counts = splits.counts()
    columns = st.columns(3)
    columns[0].metric("Classes", len(info.classes), help=", ".join(map(md, info.classes)))
    columns[1].metric("Usable photos", f"{info.num_images:,}")
    columns[2].metric("Skipped files", len(info.skipped))
    st.markdown("**Classes:** " + ", ".join(map(code, info.classes)))

    chart, table = st.columns([3, 2])
    with chart:
        st.plotly_chart(split_chart(counts), key="split_chart")
    with table:
        st.dataframe(count_table(counts), key="split_table")
        st.caption(SplitRule.of(info).explain())
    show_skipped(info)


def split_chart(counts: dict[str, dict[str, int]]) -> go.Figure:
    """Grouped bars: photos per split, one bar per class."""
    split_names = list(counts)
    class_names = list(next(iter(counts.values()), {}))
    figure = go.Figure(
        # Plotly reads names as HTML (links included): class names are folder names.
        [
            go.Bar(
                name=html.escape(name),
                x=split_names,
                y=[counts[s][name] for s in split_names],
                text=[counts[s][name] for s in split_names],
                textposition="outside",
            )
            for name in class_names
        ]
    )
    figure.update_layout(
        barmode="group",
        title="Photos per split (as the Train page uses them)",
        yaxis_title="photos",
        height=340,
        margin=dict(t=50, b=10, l=10, r=10),
        legend_title_text="class",
    )
    return figure


def count_table(counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    table = pd.DataFrame(counts)  # rows: classes, columns: splits
    table["total"] = table.sum(axis=1)
    table.index.name = "class"
    return table


def show_skipped(info: DatasetInfo) -> None:
    if not info.skipped:
        st.caption("Every file decoded: nothing was skipped.")
        return
    with st.expander(f"{len(info.skipped)} skipped files: never used for training", icon=":material/warning:"):
        st.dataframe(
            pd.DataFrame(info.skipped, columns=["file", "reason"]),
            hide_index=True,
            key="skipped_table",
        )


# --- Browser --------------------------------------------------------------

# What the browser (and the preview's photo picker) remember between reruns.
ENLARGED_KEY = "browse_enlarged"  # the path of the photo shown large
BROWSER_STATE = ("browse_split", "browse_classes", "browse_page", ENLARGED_KEY, "aug_photo", "aug_random_photo")


def reset_browser_for(root: str | Path) -> None:
    """Forget filters, page and selection when another dataset is chosen:
    its classes and photos are different."""
    if st.session_state.get("browse_root") != str(root):
        for key in BROWSER_STATE:
            st.session_state.pop(key, None)
        st.session_state["browse_root"] = str(root)


def filtered_photos(splits: Splits) -> list[tuple[str, Sample]]:
    """(split, sample) pairs matching the browser's split and class filters."""
    split_filter = st.session_state.get("browse_split", ALL_SPLITS)
    class_filter = st.session_state.get("browse_classes")
    if class_filter is None:  # before the widget first renders
        class_filter = splits.classes
    return [
        (split, sample)
        for split, samples in splits.as_dict().items()
        if split_filter in (ALL_SPLITS, split)
        for sample in _browsing_order(samples)
        if sample.class_name in class_filter
    ]


def _browsing_order(samples: list[Sample]) -> list[Sample]:
    """A fixed shuffle, so a page shows a mix of classes rather than 24 cats."""
    shuffled = list(samples)
    random.Random(0).shuffle(shuffled)  # noqa: S311 -- a display order, not a secret
    return shuffled


def photos_on_page(splits: Splits) -> list[tuple[str, Sample]]:
    photos = filtered_photos(splits)
    page = st.session_state.get("browse_page", 1)
    page = page if 1 <= page <= page_count(len(photos)) else 1
    return photos[(page - 1) * PHOTOS_PER_PAGE : page * PHOTOS_PER_PAGE]


def page_count(num_photos: int) -> int:
    return max(1, -(-num_photos // PHOTOS_PER_PAGE))


def _back_to_first_page() -> None:
    # Forgetting the page (rather than setting it) lets the widget start again at 1.
    st.session_state.pop("browse_page", None)


@st.fragment
def show_browser(splits: Splits) -> None:
    """Filters, a page of thumbnails and the selected photo enlarged.

    A fragment: paging or picking a photo reruns only this part of the page.
    """
    split_column, class_column = st.columns([2, 3])
    with split_column:
        st.segmented_control(
            "Split",
            [ALL_SPLITS, "train", "validation", "test"],
            key="browse_split",
            default=ALL_SPLITS,
            required=True,
            on_change=_back_to_first_page,
            persist_state="page",
        )
    with class_column:
        st.pills(
            "Classes",
            splits.classes,
            selection_mode="multi",
            key="browse_classes",
            default=splits.classes,
            on_change=_back_to_first_page,
            persist_state="page",
        )
    photos = filtered_photos(splits)
    if not photos:
        st.info("No photos match these filters.")
        return

    grid_column, detail_column = st.columns([3, 1], gap="medium")
    with grid_column:
        page = photos_on_page(splits)
        shown = _thumbnail_grid(page)
        st.pagination(page_count(len(photos)), key="browse_page", persist_state="page")
        st.caption(f"{len(photos):,} photos")
    if shown:
        with detail_column:
            enlarged = _enlarge_picker(shown)
            _photo_details(next((split, s) for split, s in page if s is enlarged))


def _thumbnail_grid(page: list[tuple[str, Sample]]) -> list[Sample]:
    """The page's thumbnails as one image list; returns the photos shown.

    One element rather than a container, image and button per photo: ten tabs
    showed 24 thumbnails in 6.1 s instead of 9.1 s (2026-12-04, the browse
    scenario of benchmarks/bench_class.py).
    """
    shown: list[tuple[Sample, bytes]] = []
    for _split, sample in page:
        image = thumbnail(sample.path)
        if image is None:
            st.warning(f"{md(Path(sample.path).name)} can no longer be read.")
        else:
            shown.append((sample, image))
    if shown:
        with st.container(key="thumbnails"):
            st.image(
                [image for _, image in shown],
                caption=[md(sample.class_name) for sample, _ in shown],
                width=THUMBNAIL_WIDTH,
            )
    return [sample for sample, _ in shown]


def _enlarge_picker(shown: list[Sample]) -> Sample:
    """The photo of this page shown enlarged: the first until another is picked.

    Named by its place in the grid and its class as well as its file name, since
    the thumbnails' captions show only the class.
    """
    paths = [sample.path for sample in shown]
    names = {s.path: f"{place}. {Path(s.path).name} ({s.class_name})" for place, s in enumerate(shown, start=1)}
    if st.session_state.get(ENLARGED_KEY) not in paths:
        st.session_state[ENLARGED_KEY] = paths[0]  # a new page, filter or dataset
    chosen = st.selectbox(
        "Enlarge",
        paths,
        key=ENLARGED_KEY,
        format_func=names.__getitem__,
        help="A photo of this page, counted from the top left, shown large with its size and label.",
    )
    return shown[paths.index(chosen)]


def _photo_details(choice: tuple[str, Sample]) -> None:
    split, sample = choice
    try:
        image, details = large_photo(sample.path)
    except (ImageError, OSError) as error:
        st.error(f"{md(Path(sample.path).name)} can no longer be read: {md(error)}")
        return
    st.image(image, width="stretch")
    st.markdown(
        f"**{md(details.name)}**  \n"
        f"{details.width} × {details.height} px · {details.file_bytes / 1024:.1f} KB  \n"
        f"Label: **{md(sample.class_name)}** ({sample.label}) · {split} split"
    )
