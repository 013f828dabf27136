"""al-label sync against a real Label Studio server (SQLite, a free port, a temporary data dir), and the
one-line refusals when Label Studio cannot be used.

The server runs from its own virtual environment (`make test-label-studio` installs label-studio==1.23.2 into
.venv/label-studio: its pins, e.g. numpy<2.3, stay out of the project's); AL_LABEL_STUDIO_SERVER may name
another `label-studio` executable. Its first start (database migrations) takes one to two minutes on 2 cores; the
tests that need it are marked label_studio_server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from al_runner.labeling.project import Project
from tests.test_label_files import CLASSES, images, new_project, run  # noqa: F401  (images: a fixture)

REPO = Path(__file__).resolve().parent.parent
SERVER_START_S = 600  # generous: the first start migrates a fresh SQLite database (about 1-2 min measured on 2 cores)
USER, PASSWORD = "annotator@example.com", "al-label-test-password"


def server_executable() -> str | None:
    for candidate in (
        os.environ.get("AL_LABEL_STUDIO_SERVER"),
        str(REPO / ".venv" / "label-studio" / "bin" / "label-studio"),
        shutil.which("label-studio"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.time() + SERVER_START_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"label-studio exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"label-studio did not answer {url}/health within {SERVER_START_S} s: {log.read_text()[-3000:]}")


def personal_access_token(url: str) -> str:
    """What a user does in the browser: log in, then create a personal access token (Account & Settings)."""
    import httpx

    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as browser:
        browser.get("/user/login/")
        browser.post(
            "/user/login/",
            data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies.get("csrftoken")},
            headers={"Referer": f"{url}/user/login/"},
        )
        answer = browser.post(
            "/api/token/", headers={"X-CSRFToken": browser.cookies.get("csrftoken"), "Referer": f"{url}/"}
        )
        answer.raise_for_status()
        return answer.json()["token"]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """(url, personal access token) of a fresh local Label Studio server, stopped after the module."""
    pytest.importorskip("label_studio_sdk", reason="Label Studio SDK not installed (pip install 'al_runner[label]')")
    executable = server_executable()
    if executable is None:
        pytest.skip("Label Studio server not installed (make test-label-studio installs it into .venv/label-studio)")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # local files served below the tests' temporary root (the image folders are there), as docs/labeling.md says
    env = {
        **os.environ,
        "LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(tmp_path_factory.getbasetemp()),
    }
    log = data / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                executable,
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data),
                "--username",
                USER,
                "--password",
                PASSWORD,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data,
            start_new_session=True,
        )
    try:
        wait_for_health(url, proc, log)
        yield url, personal_access_token(url), str(tmp_path_factory.getbasetemp())
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL after 30 s; a group already gone (the server failed to start) is
    fine, so its start-up error, not a ProcessLookupError, is what the test reports."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def fetch_as_api_client(url: str, token: str, path: str):
    """GET with a personal access token the documented HTTP way: refresh it into an access token (Bearer)."""
    import httpx

    access = httpx.post(f"{url}/api/token/refresh/", json={"refresh": token}, timeout=60).json()["access"]
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {access}"}, timeout=60)


def annotate_in_label_studio(url: str, token: str, project_id: int, truth: dict[str, str], n: int) -> list[str]:
    """An annotator submits the true class for the first n open tasks, through the API (as the UI does)."""
    from label_studio_sdk import LabelStudio

    client = LabelStudio(base_url=url, api_key=token)
    done = []
    for task in client.tasks.list(project=project_id, fields="all"):
        if task.annotations or len(done) == n:
            continue
        path = task.data["path"]
        client.annotations.create(
            id=task.id,
            result=[{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [truth[path]]}}],
        )
        done.append(path)
    return done


@pytest.mark.slow
@pytest.mark.label_studio_server
def test_a_round_trip_through_a_real_label_studio(label_studio, tmp_path, images):
    from label_studio_sdk import LabelStudio

    url, token, root = label_studio
    project = new_project(tmp_path, images)
    assert run("next", project, "--k", "12", "--document-root", root)[0] == 0
    asked = [p["path"] for p in Project(project).rounds()[0].picks]

    code, out, err = run("sync", project, "--label-studio", url, "--token", token, "--document-root", root)
    assert code == 0, err
    assert "pushed 12 task(s), 0 annotated" in out and "cannot show the images" not in out
    record = Project(project).label_studio()
    client = LabelStudio(base_url=url, api_key=token)
    remote = list(client.tasks.list(project=record["project_id"], fields="all"))
    assert sorted(t.data["path"] for t in remote) == sorted(asked)
    prediction = remote[0].predictions[0]
    prediction = prediction if isinstance(prediction, dict) else prediction.model_dump()
    assert prediction["model_version"].startswith("al_runner small_cnn learning_loss round 1")
    assert prediction["result"][0]["value"]["choices"][0] in CLASSES
    image = fetch_as_api_client(url, token, remote[0].data["image"])  # what the annotator's browser loads
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (images[0] / remote[0].data["path"]).read_bytes()

    labeled = annotate_in_label_studio(url, token, record["project_id"], images[1], 8)
    (Path(project) / "label_studio.json").unlink()  # even without its record, a sync finds its tasks by path
    code, out, err = run(
        "sync",
        project,
        "--label-studio",
        url,
        "--token",
        token,
        "--document-root",
        root,
        "--ls-project",
        str(record["project_id"]),
    )
    assert code == 0, err
    assert "pushed 0 task(s), 8 annotated" in out and "8 label(s) taken" in out
    labels = Project(project).labels()
    assert {p: labels.pool[p]["label"] for p in labeled} == {p: images[1][p] for p in labeled}
    assert all(labels.pool[p]["round"] == 1 for p in labeled)
    assert "waiting for annotation: 4 of round 1" in run("status", project)[1]

    assert run("next", project, "--k", "6", "--document-root", root)[0] == 0
    second = Project(project).rounds()[1]
    assert second.n_labeled == 16 and second.value is not None
    code, out, _ = run("sync", project, "--label-studio", url, "--token", token, "--document-root", root)
    assert code == 0 and "pushed 6 task(s), 8 annotated" in out and "8 unchanged" in out
    assert len(list(client.tasks.list(project=record["project_id"]))) == 18


@pytest.mark.slow
@pytest.mark.label_studio_server
def test_a_bad_token_is_one_line_and_changes_nothing(label_studio, tmp_path, images):
    url, _, _ = label_studio
    project = new_project(tmp_path, images)
    assert run("next", project, "--k", "4")[0] == 0
    before = {p.name: p.read_bytes() for p in Path(project).iterdir() if p.is_file()}
    code, out, err = run("sync", project, "--label-studio", url, "--token", "not-a-token")
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "token rejected" in err and "Nothing was changed" in err
    assert {p.name: p.read_bytes() for p in Path(project).iterdir() if p.is_file()} == before


def test_an_unreachable_label_studio_is_one_line_and_changes_nothing(tmp_path, images):
    pytest.importorskip("label_studio_sdk", reason="Label Studio SDK not installed (pip install 'al_runner[label]')")
    project = new_project(tmp_path, images)
    assert run("next", project, "--k", "4")[0] == 0
    before = {p.name: p.read_bytes() for p in Path(project).iterdir() if p.is_file()}
    code, out, err = run("sync", project, "--label-studio", f"http://127.0.0.1:{free_port()}", "--token", "x")
    assert code == 1 and out == "" and err.strip().count("\n") == 0
    assert "is unreachable" in err and "Nothing was changed" in err
    assert {p.name: p.read_bytes() for p in Path(project).iterdir() if p.is_file()} == before


def test_sync_without_a_token_says_how_to_give_one(tmp_path, images, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    project = new_project(tmp_path, images)
    code, _, err = run("sync", project, "--label-studio", "http://127.0.0.1:1")
    assert code == 1 and "no Label Studio token: give --token" in err
