"""The served relationship model: a clip and a character pair in, how they feel towards each other out
(the contract in tasks/core/serving.py)::

    model = mlflow.pyfunc.load_model("models:/relationship@champion")
    out = model.predict(pd.DataFrame({"video_path": ["scene.mp4"], "subtitle_path": ["scene.srt"],
                                      "tracks_path": ["scene.tracks.json"], "char_a": ["anna"], "char_b": ["ben"]}))
    out["label"]          # hostile / tense / neutral / mild / intimate (relationship.clean.labels)
    out["coarse_label"]   # negative / neutral / positive
    out["p_hostile"] ...  # one probability column per class (they sum to 1)
    out["error"]          # empty, or why that row could not be answered (its other columns are empty)

Per row: ``video_path`` (any video FFmpeg reads), ``tracks_path`` (the pair's boxes per frame, format
in :mod:`tasks.relationship.tracks`), ``char_a`` / ``char_b`` (two character ids of that file),
``subtitle_path`` (SubRip; empty: no subtitles) and optionally ``audio_path`` (a sound file or video
whose audio replaces the clip's own track; empty: the clip's). A clip without an audio track or
subtitles is answered from the modalities present; a path naming a missing or unreadable file is that
row's ``error``. Relative paths are relative to the working directory. ``params``: ``modalities``
(any subset of visual, audio, text: predict from those alone; default all three), ``device``,
``batch_size``. The model file holds the vocabulary and the feature settings: nothing else is needed.
"""
from __future__ import annotations

from pathlib import Path

from tasks.core.serving import ServingInputError, StudyPyfunc, file_path

LABELS = ("hostile", "tense", "neutral", "mild", "intimate")
REQUIRED = ("video_path", "subtitle_path", "tracks_path", "char_a", "char_b")
OPTIONAL_FILES = ("subtitle_path", "audio_path")


class RelationshipPyfunc(StudyPyfunc):
    """The five required columns (+ optional ``audio_path``) in; label, coarse label, p_<class>, error out."""

    inputs = tuple((c, "string") for c in REQUIRED)
    optional_inputs = (("audio_path", "string"),)
    outputs = (("label", "string"), ("coarse_label", "string"), *((f"p_{c}", "double") for c in LABELS))
    params = (("modalities", "string", ["visual", "audio", "text"]), ("batch_size", "long", 16))
    extra_packages = ("av", "srt")
    batch_size = 16

    def load(self, model_file: str) -> None:
        from models.relationship.inference import load_model

        self.model = load_model(model_file)
        # the class columns are the model's labels (the declared ones unless clean.labels was renamed)
        self.outputs = (("label", "string"), ("coarse_label", "string"),
                        *((f"p_{c}", "double") for c in self.model.labels))

    def prepare(self, row: dict, params: dict) -> dict:
        """The row's features (decoded here, so a bad file fails its row alone)."""
        from models.relationship.features import clip_features
        from tasks.core import MokuflowError
        from tasks.relationship.data import clip_inputs

        clip = {"video_path": file_path(row, "video_path"), "tracks_path": file_path(row, "tracks_path")}
        for col in OPTIONAL_FILES:
            value = row.get(col)
            empty = value is None or (isinstance(value, float) and value != value) or not str(value).strip()
            clip[col] = "" if empty else file_path(row, col)
        for col in ("char_a", "char_b"):
            value = row.get(col)
            if value is None or (isinstance(value, float) and value != value) or not str(value).strip():
                raise ServingInputError(f"{col} must be a character id of the tracks file, got {value!r}")
            clip[col] = str(value).strip()
        cfg = self.model.features
        try:
            frames, fps, a, b, audio, cues = clip_inputs(Path("/"), clip, sample_rate=cfg.sample_rate)
            return clip_features(frames, fps, a, b, audio, cues, self.model.vocab, cfg)
        except MokuflowError as e:
            raise ServingInputError(str(e)) from None
        except ValueError as e:  # e.g. a video of no frames
            raise ServingInputError(f"{clip['video_path']}: {e}") from None

    def infer(self, items: list, params: dict) -> list[list[dict]]:
        from models.relationship.features import stack
        from models.relationship.inference import check_modalities, predict_proba

        try:
            modalities = check_modalities(params.get("modalities"))
        except ValueError as e:
            raise ServingInputError(f"params modalities: {e}") from None
        fine, coarse = predict_proba(self.model.net, stack(items), modalities=modalities, device=params["device"])
        labels, coarse_labels = self.model.labels, self.model.coarse_labels
        return [[{"label": labels[int(f.argmax())], "coarse_label": coarse_labels[int(c.argmax())],
                  **{f"p_{lab}": float(p) for lab, p in zip(labels, f)}}] for f, c in zip(fine, coarse)]

    def predict(self, context, model_input, params: dict | None = None):
        from models.relationship.inference import check_modalities

        try:  # a bad modalities param is the request's error, not each row's
            check_modalities((params or {}).get("modalities", ["visual", "audio", "text"]))
        except ValueError as e:
            raise ServingInputError(f"params modalities: {e}") from None
        return super().predict(context, model_input, params)
