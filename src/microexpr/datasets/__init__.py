"""Kedro I/O classes (the only code that reads or writes project data)."""

from microexpr.datasets.arrays import NpzDataset
from microexpr.datasets.face_photo_loader import FacePhotoLoader
from microexpr.datasets.face_photos import FacePhotoFolder
from microexpr.datasets.feature_store import FeatureStore
from microexpr.datasets.final_model import FinalModelDataset
from microexpr.datasets.fold_results import FoldResultStore
from microexpr.datasets.protocol_results import ProtocolResultStore
from microexpr.datasets.raw_source import RawDatasetSource
from microexpr.datasets.stored_results import StoredModelResults
from microexpr.datasets.synthetic_writer import SyntheticCasme2Dataset
from microexpr.datasets.text_encoder import TextEncoderDataset

__all__ = [
    "FacePhotoFolder",
    "FacePhotoLoader",
    "FeatureStore",
    "FinalModelDataset",
    "FoldResultStore",
    "NpzDataset",
    "ProtocolResultStore",
    "RawDatasetSource",
    "StoredModelResults",
    "SyntheticCasme2Dataset",
    "TextEncoderDataset",
]
