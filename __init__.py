"""mdpiano: piano music emotion recognition from audio, with acoustic and symbolic domains (Zhu et al., ADMA 2023)."""

from .audio_mdpiano import AudioDecodeError, load_audio
from .checkpoints import DEFAULT_MODEL_DIR
from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_NAMES, QUADRANT_VALENCE, MDPianoConfig
from .feature_extraction_mdpiano import MDPianoFeatureExtractor
from .modeling_mdpiano import (
    MDPianoAudioClassifierOutput,
    MDPianoForAudioClassification,
    MDPianoModel,
    MDPianoModelOutput,
    MDPianoSymbolicForMaskedLM,
)
from .notes_mdpiano import MidiReadError, Note, notes_to_midi, read_midi_notes
from .pipeline_mdpiano import MDPianoAudioClassificationPipeline, apply_quadrant_bias
from .processing_mdpiano import MDPianoProcessor
from .registration import register
from .tokenization_mdpiano import MDPianoTokenizer
from .transcription_mdpiano import MDPianoTranscriber, TranscriberUnavailableError

__version__ = "0.1.0"

register()

__all__ = [
    "AudioDecodeError",
    "DEFAULT_MODEL_DIR",
    "MDPianoAudioClassificationPipeline",
    "MDPianoAudioClassifierOutput",
    "MDPianoConfig",
    "MDPianoFeatureExtractor",
    "MDPianoForAudioClassification",
    "MDPianoModel",
    "MDPianoModelOutput",
    "MDPianoProcessor",
    "MDPianoSymbolicForMaskedLM",
    "MDPianoTokenizer",
    "MDPianoTranscriber",
    "MidiReadError",
    "Note",
    "QUADRANT_AROUSAL",
    "QUADRANT_NAMES",
    "QUADRANT_VALENCE",
    "TranscriberUnavailableError",
    "apply_quadrant_bias",
    "load_audio",
    "notes_to_midi",
    "read_midi_notes",
]
