"""The Gradio demo served on 127.0.0.1: called through gradio_client, and driven in headless Chromium."""

import shutil
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
QUADRANT_LABELS = {"Q1 happy", "Q2 tense", "Q3 sad", "Q4 calm"}


@pytest.fixture(scope="module")
def app_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("log") / "app.log"


@pytest.fixture(scope="module")
def server(serve_app, model_dir, app_log):
    """`python app.py` with a small model, on a free loopback port; its URL."""
    return serve_app([sys.executable, str(REPOSITORY / "app.py")], REPOSITORY, app_log, MDPIANO_MODEL=str(model_dir),
                     MDPIANO_MAX_SECONDS="60")  # fmt: skip


def test_gradio_client(server, quadrant_clips, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    path = str(quadrant_clips[0][1])
    label, plane, roll, timeline, midi, message = client.predict(handle_file(path), None, api_name="/classify")
    assert label["label"] in QUADRANT_LABELS
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == QUADRANT_LABELS and abs(sum(confidences.values()) - 1) < 1e-4
    assert Path(midi).suffix == ".mid" and Path(midi).stat().st_size > 0
    assert plane is not None and roll is not None
    # Limits: a recording over the duration limit (60 s here) is refused with a clear message.
    import numpy as np
    import soundfile

    long_path = tmp_path / "long.wav"
    soundfile.write(long_path, np.zeros(22050 * 61, np.float32), 22050)
    with pytest.raises(Exception, match="up to 1 min"):
        client.predict(handle_file(str(long_path)), None, api_name="/classify")
    # A damaged MIDI file gets the reader's message, not Gradio's generic error.
    damaged = tmp_path / "damaged.mid"
    damaged.write_bytes(b"MThd" + bytes(range(60)))
    with pytest.raises(Exception, match="as a MIDI file"):
        client.predict(None, handle_file(str(damaged)), api_name="/classify")


def test_browser_upload(server, tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed: scripts/install.sh installs them.")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 120)
        example = sorted((REPOSITORY / "examples").glob("*.mp3"))[0]
        # Classify only once the upload has finished: Gradio then shows its player. On a busy machine an upload can
        # fail to finish: send it again, as a user would.
        for _ in range(3):
            upload = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
            upload.send_keys(str(example))
            try:
                WebDriverWait(driver, 40).until(
                    expected_conditions.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="audio-player-Piano audio"]'))
                )
                break
            except TimeoutException:
                continue
        else:
            pytest.fail("Gradio never showed the uploaded audio after three uploads.")
        wait.until(expected_conditions.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Classify']"))).click()
        predicted = wait.until(
            lambda d: next((e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=label-output-value]") if e.text), None)
        )
        assert predicted in QUADRANT_LABELS
        screenshot = tmp_path / "demo.png"
        driver.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        assert screenshot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_the_app_never_opens_a_path_given_by_the_client(server, app_log, tmp_path):
    """A client that names a server-side file instead of uploading one gets an error, not the file's analysis."""
    import httpx

    secret = tmp_path / "server_side.wav"
    secret.write_bytes((REPOSITORY / "examples").glob("*.mp3").__next__().read_bytes())
    for path in (str(secret), "/etc/passwd"):
        payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, None]}
        response = httpx.post(f"{server}gradio_api/call/classify", json=payload, timeout=60)
        if response.status_code == 200:
            events = httpx.get(f"{server}gradio_api/call/classify/{response.json()['event_id']}", timeout=120).text
            assert "event: error" in events and "event: complete" not in events, events[-500:]
        else:
            assert response.status_code in (400, 403, 422)
    assert app_log.read_text().count("because it was not uploaded by a user") >= 2  # Gradio refused both paths


def test_limits_hold_for_every_format_and_say_so_plainly(model_dir, monkeypatch, tmp_path):
    """WebM announces no duration in its header: its length still counts. A file whose length cannot be read at all
    is refused, whatever its size; the messages reach the user as they are worded."""
    import importlib.util
    import subprocess

    import gradio as gr
    import numpy as np
    import soundfile

    monkeypatch.setenv("MDPIANO_MODEL", str(model_dir))
    monkeypatch.setenv("MDPIANO_MAX_SECONDS", "20")
    spec = importlib.util.spec_from_file_location("demo_app", REPOSITORY / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    webm = tmp_path / "long.webm"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=30", "-c:a", "libopus",
                    str(webm)], check=True)  # fmt: skip
    with pytest.raises(gr.Error) as error:
        app.classify(str(webm), None)
    assert error.value.message == "The recording lasts 30 s; this demo takes up to 20 s."
    unknown = tmp_path / "notes.txt"
    unknown.write_text("not audio")
    with pytest.raises(gr.Error, match="length of this file cannot be read"):
        app.classify(str(unknown), None)
    blip = tmp_path / "blip.wav"  # named as the user's file, not by the server's upload folder
    soundfile.write(blip, np.zeros(2205, np.float32), 22050)
    with pytest.raises(gr.Error) as error:
        app.classify(str(blip), None)
    assert error.value.message.startswith("The recording blip.wav lasts 0.10 s, too short to analyse")
    example = sorted((REPOSITORY / "examples").glob("*.mp3"))[0]
    _, _, _, _, midi, message = app.classify(str(example), None)
    assert Path(midi).parent == app.TRANSCRIPTION_DIR and Path(midi).stat().st_size > 0
    assert "sampled at" not in message
    # Audio below the model's rate is classified, and the demo says what that costs (m4a: a rate from ffmpeg's header).
    low = tmp_path / "low.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(example), "-t", "10", "-ar", "16000", str(low)], check=True)
    _, _, _, _, _, message = app.classify(str(low), None)
    assert "sampled at 16000 Hz, below the 22050 Hz the model reads: it holds nothing above 8000 Hz" in message
    from mdpiano import MDPianoConfig

    assert f"(mostly arousal){app.band_limited_clause(app.classifier.model.config)}. Upload" in message
    fusion = MDPianoConfig.from_pretrained(REPOSITORY / "models" / "mdpiano-emopia").note_statistics_fusion
    assert app.band_limited_clause(MDPianoConfig(note_statistics_fusion={**fusion, "band_limited_network_weight": 0.0})) == (
        "; its answer for such audio comes from the statistics of the transcribed notes alone (given 20 notes or more)")
    assert "weighs the network 0.3 against" in app.band_limited_clause(
        MDPianoConfig(note_statistics_fusion={**fusion, "band_limited_network_weight": 0.3}))
    assert app.band_limited_clause(MDPianoConfig()) == ""
    # A MIDI file lasts as long as it renders: to its last event, a controller change long after the notes included.
    import pretty_midi

    late = pretty_midi.PrettyMIDI()
    late.instruments.append(pretty_midi.Instrument(0))
    late.instruments[0].notes.append(pretty_midi.Note(80, 60, 0.0, 1.0))
    late.instruments[0].control_changes.append(pretty_midi.ControlChange(7, 100, 25.0))
    late.write(str(tmp_path / "late.mid"))
    with pytest.raises(gr.Error, match="The recording lasts 25 s; this demo takes up to 20 s."):
        app.classify(None, str(tmp_path / "late.mid"))


def test_piano_roll_shows_notes_that_start_late_and_says_what_it_leaves_out():
    """A long silent opening still shows its notes; notes left out of the shown span are counted in the title."""
    from mdpiano import Note
    from mdpiano.plots import figure_piano_roll

    late = figure_piano_roll([Note(70.5 + i, 71.0 + i, 60, 80) for i in range(20)])
    assert late.axes[0].get_xlim() == (70.0, 90.0) and len(late.axes[0].patches) == 20
    assert late.axes[0].get_title() == "20 notes"
    gap = figure_piano_roll([Note(i, i + 0.5, 60, 80) for i in range(50)] + [Note(100 + i, 100.5 + i, 62, 80) for i in range(100)])
    assert gap.axes[0].get_xlim() == (0.0, 60.0) and len(gap.axes[0].patches) == 50
    assert gap.axes[0].get_title() == "150 notes (50 from 0 to 60 s shown)"


@pytest.mark.parametrize("setting, message", [({"MDPIANO_MODEL": "/no/such/model"}, "error: MDPIANO_MODEL /no/such/model: no such folder"),
                                              ({"MDPIANO_MODEL": "corrupt"}, "error: MDPIANO_MODEL corrupt: The weights of corrupt are not a readable"),
                                              ({"MDPIANO_MAX_SECONDS": "10min"}, "error: MDPIANO_MAX_SECONDS must be a positive number, got '10min'")])  # fmt: skip
def test_bad_settings_end_the_app_with_one_line(setting, message, model_dir, tmp_path):
    import os
    import shutil
    import subprocess

    if setting.get("MDPIANO_MODEL") == "corrupt":  # a model folder (relative to the app's folder) with cut weights
        weights = shutil.copytree(model_dir, tmp_path / "corrupt") / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])

    result = subprocess.run([sys.executable, str(REPOSITORY / "app.py")], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1", **setting})  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
