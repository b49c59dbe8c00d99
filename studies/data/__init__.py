"""Datasets: bundled and generated sets, user files (.npz, .csv, MNIST IDX), splits and scaling."""
from studies.data.base import Dataset, DatasetError
from studies.data.datasets import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetError", "load_dataset"]
