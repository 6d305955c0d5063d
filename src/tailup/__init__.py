"""tailup: stream growing video recordings to S3 while they are being written."""

__version__ = "0.1.0"
