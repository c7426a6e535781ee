"""mdpiano: piano music emotion recognition from audio, with acoustic and symbolic domains (Zhu et al., ADMA 2023)."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoProcessor, AutoTokenizer

from .audio_mdpiano import AudioDecodeError, load_audio
from .checkpoints import DEFAULT_MODEL_DIR
from .configuration_mdpiano import QUADRANT_AROUSAL, QUADRANT_NAMES, QUADRANT_VALENCE, MDPianoConfig
from .feature_extraction_mdpiano import MDPianoFeatureExtractor
from .notes_mdpiano import MidiReadError, Note, notes_to_midi, read_midi_notes
from .processing_mdpiano import MDPianoProcessor
from .tokenization_mdpiano import MDPianoTokenizer
from .transcription_mdpiano import MDPianoTranscriber, TranscriberUnavailableError

__version__ = "0.1.0"

# Installed as a package, the Auto classes resolve mdpiano; `register_for_auto_class` makes `save_pretrained`
# copy the module files and write `auto_map`, so a saved folder also loads as remote code without the package.
AutoConfig.register(MDPianoConfig.model_type, MDPianoConfig, exist_ok=True)
AutoFeatureExtractor.register(MDPianoConfig, MDPianoFeatureExtractor, exist_ok=True)
AutoTokenizer.register(MDPianoConfig, slow_tokenizer_class=MDPianoTokenizer, exist_ok=True)
AutoProcessor.register(MDPianoConfig, MDPianoProcessor, exist_ok=True)
MDPianoConfig.register_for_auto_class()
MDPianoFeatureExtractor.register_for_auto_class()
MDPianoTokenizer.register_for_auto_class()
MDPianoProcessor.register_for_auto_class()

__all__ = [
    "AudioDecodeError",
    "DEFAULT_MODEL_DIR",
    "MDPianoConfig",
    "MDPianoFeatureExtractor",
    "MDPianoProcessor",
    "MDPianoTokenizer",
    "MDPianoTranscriber",
    "MidiReadError",
    "Note",
    "QUADRANT_AROUSAL",
    "QUADRANT_NAMES",
    "QUADRANT_VALENCE",
    "TranscriberUnavailableError",
    "load_audio",
    "notes_to_midi",
    "read_midi_notes",
]
