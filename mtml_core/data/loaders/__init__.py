"""Real-dataset loaders, by the datasets' published on-disk formats; all return Frames or ClassSources.

Nothing is downloaded: a missing path raises FileNotFoundError naming it, a corrupt file raises
ValueError naming it, and invalid depth (0, negative, NaN, inf) becomes NaN, never 0.
"""

from mtml_core.data.loaders.common import FrameList, ImageClassSet, split_classes
from mtml_core.data.loaders.depth import annotated_depth_frames, kitti_depth_frames, read_kitti_depth
from mtml_core.data.loaders.diode import diode_frames
from mtml_core.data.loaders.miniimagenet import miniimagenet_csv, miniimagenet_pickle
from mtml_core.data.loaders.nyu import nyu_labeled_mat, nyu_sync_frames
from mtml_core.data.loaders.omniglot import load_omniglot, omniglot_splits, omniglot_union_splits
from mtml_core.data.loaders.places import class_folders
from mtml_core.data.loaders.rgbd_sequence import RGBDSequence, rgbd_sequences
from mtml_core.data.loaders.yorkurban import YORK_URBAN_K, read_yorkurban_gt, yorkurban_frames

__all__ = [
    "FrameList", "ImageClassSet", "split_classes", "annotated_depth_frames", "kitti_depth_frames",
    "read_kitti_depth", "diode_frames", "miniimagenet_csv", "miniimagenet_pickle", "nyu_labeled_mat",
    "nyu_sync_frames", "load_omniglot", "omniglot_splits", "omniglot_union_splits",
    "class_folders", "RGBDSequence", "rgbd_sequences", "YORK_URBAN_K",
    "read_yorkurban_gt", "yorkurban_frames",
]
