"""What importing mdpiano registers with transformers: the Auto classes and the audio-classification pipeline."""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForMaskedLM,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.pipelines import PIPELINE_REGISTRY, AudioClassificationPipeline

from .configuration_mdpiano import MDPianoConfig
from .feature_extraction_mdpiano import MDPianoFeatureExtractor
from .modeling_mdpiano import MDPianoForAudioClassification, MDPianoModel, MDPianoSymbolicForMaskedLM
from .pipeline_mdpiano import MDPianoAudioClassificationPipeline
from .processing_mdpiano import MDPianoProcessor
from .tokenization_mdpiano import MDPianoTokenizer


class AudioClassificationDispatch(AudioClassificationPipeline):
    """
    Stands for the "audio-classification" task once mdpiano is imported: mdpiano models get
    [`MDPianoAudioClassificationPipeline`] (which runs the processor: features and transcription), every other model
    the stock `AudioClassificationPipeline`.

    The feature extractor is optional here (an mdpiano model object may come with `processor=` alone); for other
    models its absence is the same error as before.
    """

    _load_feature_extractor = None

    def __new__(cls, model, *args, **kwargs):
        if getattr(model.config, "model_type", None) == MDPianoConfig.model_type:
            return MDPianoAudioClassificationPipeline(model, *args, **kwargs)
        if kwargs.get("feature_extractor") is None:
            raise ValueError(
                "Impossible to guess which feature extractor to use. Please provide a PreTrainedFeatureExtractor "
                "class or a path/identifier to a pretrained feature extractor."
            )
        return AudioClassificationPipeline(model, *args, **kwargs)


def register() -> None:
    AutoConfig.register(MDPianoConfig.model_type, MDPianoConfig, exist_ok=True)
    AutoFeatureExtractor.register(MDPianoConfig, MDPianoFeatureExtractor, exist_ok=True)
    AutoTokenizer.register(MDPianoConfig, slow_tokenizer_class=MDPianoTokenizer, exist_ok=True)
    AutoProcessor.register(MDPianoConfig, MDPianoProcessor, exist_ok=True)
    AutoModel.register(MDPianoConfig, MDPianoModel, exist_ok=True)
    AutoModelForAudioClassification.register(MDPianoConfig, MDPianoForAudioClassification, exist_ok=True)
    AutoModelForMaskedLM.register(MDPianoConfig, MDPianoSymbolicForMaskedLM, exist_ok=True)
    # `register_for_auto_class` makes `save_pretrained` copy the module files and write `auto_map`, so a saved
    # folder also loads as remote code where mdpiano is not installed.
    for cls, auto_class in (
        (MDPianoConfig, "AutoConfig"),
        (MDPianoFeatureExtractor, "AutoFeatureExtractor"),
        (MDPianoTokenizer, "AutoTokenizer"),
        (MDPianoProcessor, "AutoProcessor"),
        (MDPianoModel, "AutoModel"),
        (MDPianoForAudioClassification, "AutoModelForAudioClassification"),
        (MDPianoSymbolicForMaskedLM, "AutoModelForMaskedLM"),
    ):
        cls.register_for_auto_class(auto_class)
    # Swap the implementation of the existing task in place (its default model and type stay as they are).
    PIPELINE_REGISTRY.supported_tasks["audio-classification"]["impl"] = AudioClassificationDispatch
