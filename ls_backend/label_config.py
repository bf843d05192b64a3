"""The one owner of each project's label config: parses it (`ls_backend.labeling`) and remembers it.

The config that counts is the one Label Studio itself has: a job reads it from LABEL_STUDIO_URL
(`refresh`) and stores it. What a request says (/setup's schema, a webhook's project, /predict's
label_config) is a hint: it can tell that the config changed, so that a job reads it, but it replaces
nothing (`changed`), and /predict may use it unsaved before any job ran (`for_request`).
"""

from __future__ import annotations

from typing import Any

from ls_backend.labeling import LabelConfigError, LabelingInterface, parse_label_config
from ls_backend.labelstudio import LabelStudioClient
from ls_backend.store import Store


class LabelConfigs:
    def __init__(self, store: Store) -> None:
        self.store = store

    def stored(self, project_id: int) -> LabelingInterface | None:
        """The interface of the config a job last read from LS, or None before that."""
        data = (self.store.project(project_id) or {}).get("interface")
        return LabelingInterface.from_dict(data) if data else None

    def refresh(self, ls: LabelStudioClient, project_id: int) -> LabelingInterface:
        """Read the project's config from LS and store it; an unusable one is stored with its error, then raised."""
        label_config = ls.project(project_id).get("label_config") or ""
        try:
            interface = parse_label_config(label_config)
        except LabelConfigError as error:
            self.store.save_label_config(project_id, label_config, None, str(error))
            raise
        self.store.save_label_config(project_id, label_config, interface.to_dict(), None)
        return interface

    def changed(self, project_id: int, label_config: str | LabelingInterface) -> bool:
        """Whether a config a request sent (text, or already parsed) differs from the stored one; False while
        none is stored (the first job reads LS's anyway). One this backend cannot use counts as a change, so
        the job records why."""
        stored = self.stored(project_id)
        if stored is None:
            return False
        if isinstance(label_config, LabelingInterface):
            return label_config != stored
        try:
            return parse_label_config(label_config) != stored
        except LabelConfigError:
            return True

    def for_request(self, project_id: int, label_config: Any) -> LabelingInterface | None:
        """The stored interface, else the request's config parsed but not stored (None when it sent none).

        Raises LabelConfigError when the request's config cannot be used."""
        stored = self.stored(project_id)
        if stored is not None:
            return stored
        if not isinstance(label_config, str) or not label_config.strip():
            return None
        return parse_label_config(label_config)
