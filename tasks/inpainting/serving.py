"""The served inpainting model: a video and its scribbles in, the object's masks and the video without it out
(the contract in tasks/core/serving.py, for a study that writes files)::

    model = mlflow.pyfunc.load_model("models:/inpainting@champion")
    out = model.predict(pd.DataFrame({"video": ["clip.mp4", "frames/"], "scribbles": ["a.json", "b.json"]}),
                        params={"out_dir": "/tmp/cloak"})
    out["masks_dir"]    # <out_dir>/<video stem>/masks: one PNG per frame, input size, 0 / 255
    out["result_dir"]   # <out_dir>/<video stem>/result: one PNG per frame, the object removed
                        # (and <out_dir>/<video stem>/result.mp4 beside them, H.264)
    out["n_frames"]     # frames read
    out["error"]        # empty, or why that row could not be done (its other columns are empty)

``video``: a video file or a folder of frames (jpg / png, sorted by name). ``scribbles``: the path of a
DAVIS interactive scribble file, or its JSON text. Any resolution and length: the network runs at the
model file's internal size, frames stream from disk and the memory bank is capped, so long videos stay
within memory. ``params``: ``out_dir`` (required), ``device`` (``auto``: the GPU when there is one),
``max_memory`` (0: the model file's). Each row is one session, so rows run one at a time.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tasks.core.serving import OUT_DIR_KEY, ServingInputError, StudyPyfunc, file_path

VIDEO, SCRIBBLES = "video", "scribbles"


class InpaintingPyfunc(StudyPyfunc):
    """``video`` + ``scribbles`` in; ``masks_dir``, ``result_dir``, ``n_frames`` and ``error`` out."""

    inputs = ((VIDEO, "string"), (SCRIBBLES, "string"))
    outputs = (("masks_dir", "string"), ("result_dir", "string"), ("n_frames", "long"))
    params = (("max_memory", "long", 0), ("batch_size", "long", 1))
    extra_packages = ("av",)
    writes_files = True
    batch_size = 1

    def load(self, model_file: str) -> None:
        from models.inpainting.inference import load_model

        self.net, self.meta = load_model(model_file)

    def prepare(self, row: dict, params: dict) -> dict:
        """The row's paths, checked (the video's frames and the scribbles are read by the cloak, which
        refuses bad ones before writing anything)."""
        video = file_path(row, VIDEO, folder=True)
        return {"video": video, "scribbles": _scribble_file(row.get(SCRIBBLES)), "out": row[OUT_DIR_KEY]}

    def infer(self, items: list, params: dict) -> list[list[dict]]:
        from tasks.core import MokuflowError
        from tasks.inpainting.cloak import cloak

        out = []
        for item in items:
            memory = int(params.get("max_memory") or 0) or None
            with tempfile.TemporaryDirectory(prefix="mokuflow-scribbles-") as tmp:
                scribbles = item["scribbles"]
                if not isinstance(scribbles, Path):  # JSON text: the cloak reads a file
                    (Path(tmp) / "scribbles.json").write_text(scribbles, encoding="utf-8")
                    scribbles = Path(tmp) / "scribbles.json"
                try:
                    summary = cloak(item["video"], scribbles, item["out"], net=self.net,
                                    internal_size=self.meta.get("internal_size"),
                                    max_memory=memory or self.meta.get("max_memory"),
                                    device=params["device"], progress=False)
                except MokuflowError as e:  # one line naming the file and the problem: this row's error
                    raise ServingInputError(str(e)) from None
            out.append([{"masks_dir": summary["masks_dir"], "result_dir": summary["result_dir"],
                         "n_frames": int(summary["n_frames"])}])
        return out


def _scribble_file(value) -> Path | str:
    """A scribble file's path (a Path), or the JSON text given inline (a str, checked to parse)."""
    if isinstance(value, dict) or (isinstance(value, str) and value.lstrip().startswith("{")):
        text = json.dumps(value) if isinstance(value, dict) else value
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ServingInputError(f"{SCRIBBLES}: not a file path and not valid JSON ({e})") from None
        return text
    return Path(file_path({SCRIBBLES: value}, SCRIBBLES))
