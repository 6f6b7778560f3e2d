"""fer: facial emotion recognition on FER-2013 with PyTorch Lightning."""

from fer.common import EMOTIONS

__all__ = ["EMOTIONS"]
__version__ = "0.1.0"
