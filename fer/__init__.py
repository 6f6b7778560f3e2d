"""fer: facial emotion recognition on FER-2013 with PyTorch Lightning.

from fer import EmotionRecognizer
faces = EmotionRecognizer().predict("photo.jpg")
"""

from fer.common import EMOTIONS

__all__ = ["EMOTIONS", "EmotionRecognizer", "EmotionTracker", "FaceEmotion"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The API loads the model's runtime (onnxruntime, the face detector) only when it is asked for.
    if name in ("EmotionRecognizer", "EmotionTracker", "FaceEmotion"):
        from fer import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'fer' has no attribute {name!r}")
