"""Rendering MIDI to piano audio (EMOPIA ships MIDI, not audio): SoundFonts through FluidSynth, and a GUS patch
through TiMidity++ for a piano whose samples none of the SoundFonts share."""

import io
import os
import shutil
import subprocess
import tempfile

import numpy as np

from .notes_mdpiano import load_midi

# A rendering whose loudest sample stays below this (8 steps of 16-bit audio) holds no music, only dither.
SILENT_PEAK = 8 / 32768

# SoundFonts by name: Debian's fluid-soundfont-gm, musescore-general-soundfont-small and fluidr3mono-gm-soundfont,
# and the small TimGM6mb that ships inside pretty_midi.
KNOWN_SOUNDFONTS = {
    "FluidR3_GM": ["/usr/share/sounds/sf2/FluidR3_GM.sf2"],
    "TimGM6mb": ["<pretty_midi>/TimGM6mb.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2"],
    "MuseScore_General_Lite": ["/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"],
    "FluidR3Mono_GM": ["/usr/share/sounds/sf3/FluidR3Mono_GM.sf3"],
    # Debian's freepats: GUS patches (.pat), rendered with TiMidity++ (Debian's timidity), not FluidSynth. The two
    # pianos are different recordings, unlike each other and every SoundFont here (tests/test_rendering.py).
    "FreePats_Grand": ["/usr/share/midi/freepats/Tone_000/000_Acoustic_Grand_Piano.pat"],
    "FreePats_Bright": ["/usr/share/midi/freepats/Tone_000/001_Acoustic_Brite_Piano.pat"],
}


def default_soundfont() -> str:
    """FluidR3_GM when Debian's fluid-soundfont-gm is installed, else the TimGM6mb that ships with pretty_midi."""
    try:
        return find_soundfont("FluidR3_GM")
    except FileNotFoundError:
        return find_soundfont("TimGM6mb")


def find_soundfont(name_or_path: str) -> str:
    """
    Path of a SoundFont or GUS patch given its path or one of the names in `KNOWN_SOUNDFONTS`, checked to be
    playable: a patch needs TiMidity++ as well.

    Raises:
        FileNotFoundError: with the package that provides the file or the player.
    """
    path = _locate(name_or_path)
    if path.lower().endswith(".pat"):
        _timidity()
    return path


def _locate(name_or_path: str) -> str:
    if os.path.isfile(name_or_path):
        return name_or_path
    if name_or_path not in KNOWN_SOUNDFONTS:
        raise FileNotFoundError(
            f"SoundFont {name_or_path!r} is neither a file nor one of {sorted(KNOWN_SOUNDFONTS)}."
        )
    import pretty_midi

    pretty_midi_dir = os.path.dirname(pretty_midi.__file__)
    for candidate in KNOWN_SOUNDFONTS[name_or_path]:
        candidate = candidate.replace("<pretty_midi>", pretty_midi_dir)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"SoundFont {name_or_path} not found (looked in {KNOWN_SOUNDFONTS[name_or_path]}); "
        "install Debian's fluid-soundfont-gm, musescore-general-soundfont-small, fluidr3mono-gm-soundfont and "
        "freepats (scripts/install.sh does)."
    )


def _timidity() -> str:
    timidity = shutil.which("timidity")
    if timidity is None:
        raise FileNotFoundError(
            "Rendering a GUS patch needs TiMidity++: install Debian's timidity (scripts/install.sh does)."
        )
    return timidity


def _midi_name(midi) -> str:
    """How messages name a MIDI input: its path, where it has one."""
    return f"The MIDI file {os.fspath(midi)}" if isinstance(midi, (str, os.PathLike)) else "The MIDI file"


def render_midi(
    midi,
    soundfont: str | None = None,
    sampling_rate: int = 22050,
    max_duration_s: float | None = None,
    peak: float = 0.9,
    program: int | None = None,
) -> np.ndarray:
    """
    Renders a MIDI file (path) or `pretty_midi.PrettyMIDI` to mono float32 audio, sustain pedal and other
    controllers included: with FluidSynth for a SoundFont (.sf2, .sf3), with TiMidity++ for a GUS patch (.pat).

    Args:
        midi: a MIDI path (read with [`~notes_mdpiano.load_midi`]: controllers act on their channel) or a
            `pretty_midi.PrettyMIDI`.
        soundfont: a SoundFont or GUS patch path, or a name from `KNOWN_SOUNDFONTS`; `None` is
            [`default_soundfont`].
        sampling_rate: output rate in Hz.
        max_duration_s: keep only the first seconds.
        peak: peak amplitude of the returned audio (pretty_midi normalises its output to 1).
        program: General MIDI program for every instrument (0 acoustic grand, 1 bright acoustic, ...); `None`
            keeps the file's.

    Returns:
        `np.ndarray` of shape (samples,), float32.
    """
    import pretty_midi

    source = midi
    if not isinstance(midi, pretty_midi.PrettyMIDI):
        midi = load_midi(midi)
    if max_duration_s is not None:
        _crop_midi(midi, max_duration_s)
    # Drums are no piano notes: `read_midi_notes` leaves them out of the symbolic domain, and so does the audio.
    midi.instruments = [instrument for instrument in midi.instruments if not instrument.is_drum and instrument.notes]
    if not midi.instruments:
        raise ValueError(f"{_midi_name(source)} has no piano notes to render (none at all, or drums only).")
    if program is not None:
        for instrument in midi.instruments:
            instrument.program = program
    soundfont = default_soundfont() if soundfont is None else find_soundfont(soundfont)
    if soundfont.lower().endswith(".pat"):
        audio = _render_with_timidity(midi, soundfont, sampling_rate)
    else:
        audio = _render_with_fluidsynth(midi, soundfont, sampling_rate)
    # Normalised to the peak, as pretty_midi does; a rendering of (almost) nothing would be its 16-bit dither made loud.
    loudest = np.abs(audio).max(initial=0.0)
    if loudest < SILENT_PEAK:
        raise ValueError(f"{_midi_name(source)} renders silent with {os.path.basename(soundfont)} (its loudest sample is "
                         f"{loudest * 32768:.0f} of 32768): its notes are too soft, or outside the instrument's range.")  # fmt: skip
    audio = audio / loudest
    if max_duration_s is not None:
        audio = audio[: int(round(max_duration_s * sampling_rate))]
    return (audio * peak).astype(np.float32)


def rendered_duration(midi) -> float:
    """
    Seconds of audio [`render_midi`] makes of a MIDI file (path or `pretty_midi.PrettyMIDI`): to the last event of
    its piano tracks, controller changes and pitch bends included, which may lie far past the last note.
    """
    import pretty_midi

    if not isinstance(midi, pretty_midi.PrettyMIDI):
        midi = load_midi(midi)
    return max((instrument.get_end_time() for instrument in midi.instruments if not instrument.is_drum and instrument.notes), default=0.0)


def _render_with_fluidsynth(midi, soundfont_path: str, sampling_rate: int) -> np.ndarray:
    # A fresh synthesizer for each track (loading a cached SoundFont takes ~0.05 s): one that rendered before keeps
    # its event timing phase, effect state and controllers, so a clip's samples would depend on what the process
    # rendered earlier, and one track's held sustain pedal would hold the next track's notes. Summed as pretty_midi
    # does.
    waveforms = []
    for instrument in midi.instruments:
        synthesizer, soundfont_id = _new_synthesizer(soundfont_path, sampling_rate)
        try:
            waveforms.append(instrument.fluidsynth(synthesizer=synthesizer, sfid=soundfont_id))
        finally:
            synthesizer.delete()
    audio = np.zeros(max(len(waveform) for waveform in waveforms))
    for waveform in waveforms:
        audio[: len(waveform)] += waveform
    return audio / 32768  # 16-bit samples to [-1, 1]


def _render_with_timidity(midi, patch_path: str, sampling_rate: int) -> np.ndarray:
    """
    TiMidity++ with one GUS patch on every melodic program. Its own reverb and chorus are off (rooms are added
    by `mdpiano.augmentation`), and the leading silence that it drops by default is kept, so the audio starts
    where the MIDI does, as FluidSynth's does.
    """
    import soundfile

    timidity = _timidity()
    with tempfile.TemporaryDirectory() as folder:
        # The patch is linked under a plain name: TiMidity++'s configuration syntax splits paths at spaces.
        os.symlink(os.path.abspath(patch_path), os.path.join(folder, "piano.pat"))
        config = "\n".join([f"dir {folder}", "bank 0", *(f"{program} piano.pat" for program in range(128))])
        midi_path = os.path.join(folder, "clip.mid")
        midi.write(midi_path)
        command = [timidity, "-c", os.devnull, "-x", config, "--preserve-silence", "-EFreverb=d", "-EFchorus=d",
                   "--output-mono", "-s", str(sampling_rate), "-Ow", "-o", "-", midi_path]  # fmt: skip
        result = subprocess.run(command, capture_output=True, check=False)
    messages = result.stderr.decode(errors="replace")
    # TiMidity++ exits 0 when it cannot load a patch and plays the notes without it.
    if result.returncode != 0 or not result.stdout or "Couldn't load instrument" in messages:
        problems = [line.replace("piano.pat", patch_path) for line in messages.splitlines() if "piano.pat" in line]
        reason = "; ".join(dict.fromkeys(problems)) or messages.strip()
        raise RuntimeError(f"TiMidity++ could not render with {patch_path}: {reason}")
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float64")
    if rate != sampling_rate:
        raise RuntimeError(f"TiMidity++ wrote {rate} Hz audio instead of {sampling_rate} Hz.")
    return audio


def _new_synthesizer(soundfont_path: str, sampling_rate: int):
    """A FluidSynth synthesizer with the SoundFont loaded, and the SoundFont's id."""
    try:
        import fluidsynth
    except ImportError as error:
        raise ImportError(
            "Rendering MIDI to audio needs FluidSynth: install Debian's libfluidsynth3 and `pip install pyfluidsynth`."
        ) from error
    synthesizer = fluidsynth.Synth(samplerate=float(sampling_rate))
    soundfont_id = synthesizer.sfload(soundfont_path)
    if soundfont_id == -1:
        raise ValueError(f"FluidSynth could not load the SoundFont {soundfont_path}.")
    return synthesizer, soundfont_id


def _crop_midi(midi, end_s: float) -> None:
    """Drops notes starting after `end_s` and cuts the others there, so the release tail is not rendered."""
    for instrument in midi.instruments:
        instrument.notes = [n for n in instrument.notes if n.start < end_s]
        for note in instrument.notes:
            note.end = min(note.end, end_s)
        instrument.control_changes = [c for c in instrument.control_changes if c.time < end_s]


__all__ = ["KNOWN_SOUNDFONTS", "default_soundfont", "find_soundfont", "render_midi"]
