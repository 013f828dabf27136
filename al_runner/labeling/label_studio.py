"""`al-label sync`: the project's picks as tasks of a Label Studio project, finished annotations back as labels.

Through the official SDK (`label-studio-sdk`, the `[label]` extra). Authentication: a personal access token
(Label Studio's default since 1.18: a JWT refresh token, shown once under Account & Settings > Personal Access
Token); the SDK exchanges it for short-lived access tokens itself. Legacy tokens work where the server allows them.

Order, so that a failure at any point changes nothing locally and a rerun finishes the job:
1. connect and authenticate (unreachable server, bad token: one line, nothing written);
2. find or create the Label Studio project (its id is recorded in label_studio.json), and give it a
   local-files storage on the image folder, so that the task URLs (`/data/local-files/?d=...`) show the images
   (Label Studio serves local files only when started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and a
   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT above the folder; otherwise sync says so and goes on);
3. push every exported pick that is neither labeled nor already a task there (tasks are matched by
   `data.path`, so a push interrupted before its record was written is not pushed twice);
4. pull the tasks with a submitted annotation and take them like `al-label import` of a Label Studio
   export (same checks, same refusals); labels.json is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from al_runner.labeling.commands import commit_records, labeling_of
from al_runner.labeling.exports import label_studio_tasks
from al_runner.labeling.formats import image_of_task, records_from_ls_tasks
from al_runner.labeling.importer import ImportResult
from al_runner.labeling.project import LabelingError, Project


@dataclass
class SyncReport:
    url: str
    project_id: int
    pushed: int
    finished: int
    result: ImportResult
    images_note: str | None = None  # why Label Studio cannot show the images, when it cannot


def _sdk():
    try:
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError
    except ImportError:
        raise LabelingError("al-label sync needs the Label Studio SDK: pip install 'al_runner[label]'") from None
    return LabelStudio, ApiError


def connect(url: str, token: str):
    """An authenticated client, or one line saying why not (nothing has been written yet)."""
    import httpx

    LabelStudio, ApiError = _sdk()
    try:
        client = LabelStudio(base_url=url, api_key=token, timeout=60)
        client.users.whoami()
    except ApiError as error:
        reason = "token rejected" if error.status_code in (401, 403) else f"HTTP {error.status_code}"
        detail = error.body.get("detail") if isinstance(error.body, dict) else error.body
        raise LabelingError(
            f"Label Studio at {url}: {reason} ({detail}); use a personal access token "
            f"(Account & Settings > Personal Access Token). Nothing was changed"
        ) from None
    except (httpx.HTTPError, OSError) as error:
        raise LabelingError(
            f"Label Studio at {url} is unreachable ({type(error).__name__}: {error}). Nothing was changed"
        ) from None
    return client


def _as_dict(task) -> dict:
    """The task fields we read (the SDK's task model types `annotations` loosely; read the attributes)."""
    if isinstance(task, dict):
        return task
    return {"id": task.id, "data": task.data or {}, "annotations": list(task.annotations or [])}


def remote_tasks(client, project_id: int) -> list[dict]:
    """Every task of the Label Studio project, with its annotations."""
    return [_as_dict(task) for task in client.tasks.list(project=project_id, fields="all")]


def _find_or_create_project(client, project: Project, labeling, record: dict, url: str, ls_project: int | None) -> int:
    project_id = ls_project or (record.get("project_id") if record.get("url") == url else None)
    if project_id is not None:
        client.projects.get(id=project_id)  # exists and is readable with this token
        return int(project_id)
    created = client.projects.create(
        title=f"al-label {project.dir.resolve().name}"[:50],
        description=f"al_runner labeling project {project.dir.resolve()}",
        label_config=labeling.label_config(project.classes),
    )
    return int(created.id)


def sync(
    project: Project,
    client,
    url: str,
    document_root: str = "/",
    allow_unrequested: bool = False,
    overwrite: bool = False,
    ls_project: int | None = None,
) -> SyncReport:
    """Steps 2-4 with a `connect`ed client (call with the project's lock held)."""
    _, ApiError = _sdk()
    labeling = labeling_of(project.config)
    project.check_images_unchanged()
    record = project.label_studio()
    try:
        project_id = _find_or_create_project(client, project, labeling, record, url, ls_project)
        if record.get("project_id") != project_id or record.get("url") != url:
            record = {"url": url, "project_id": project_id, "tasks": {}}
            project.save_label_studio(record)
        images_note = serve_images(client, project, project_id, ApiError)
        tasks = remote_tasks(client, project_id)
        known = {image_of_task(t.get("data") or {}): t["id"] for t in tasks}
        pushed = _push(client, project, labeling, project_id, known, document_root)
        if pushed:
            tasks = remote_tasks(client, project_id)
    except ApiError as error:
        raise LabelingError(f"Label Studio at {url}: HTTP {error.status_code} ({error.body})") from None
    record["tasks"] = {image_of_task(t.get("data") or {}): t["id"] for t in tasks}
    project.save_label_studio(record)
    sizes = {e.path: (e.width, e.height) for e in project.images}
    records, unreadable = records_from_ls_tasks(tasks, f"{url}/projects/{project_id}", lambda name: sizes.get(name))
    result = commit_records(project, labeling, records, unreadable, allow_unrequested, overwrite)
    return SyncReport(url, project_id, pushed, len(records), result, images_note)


def serve_images(client, project: Project, project_id: int, api_error) -> str | None:
    """A local-files storage on the image folder (once); None when there is one, else the server's reason."""
    folder = str(project.images_root)
    if any(s.path == folder for s in client.import_storage.local.list(project=project_id)):
        return None
    try:
        client.import_storage.local.create(
            project=project_id, path=folder, title="al-label images", use_blob_urls=False
        )
    except api_error as error:
        detail = error.body.get("detail", error.body) if isinstance(error.body, dict) else error.body
        return " ".join(str(detail).split())[:300]
    return None


def _push(client, project: Project, labeling, project_id: int, known: dict, document_root: str) -> int:
    """Tasks for every exported pick that is not labeled yet and not in Label Studio yet, round by round."""
    labels, rounds = project.labels(), project.rounds()
    pushed = 0
    for round_ in rounds:
        todo = {p["path"] for p in round_.picks if p["path"] not in labels.pool and p["path"] not in known}
        if not todo:
            continue
        tasks = label_studio_tasks(project, labeling, round_, document_root, only=todo)
        client.projects.import_tasks(id=project_id, request=tasks)
        pushed += len(tasks)
        known.update(dict.fromkeys(todo))
    return pushed
