"""The served VQA model: video paths in, one quality score each (the contract in tasks/core/serving.py).

    model = mlflow.pyfunc.load_model("models:/vqa@champion")
    out = model.predict(pd.DataFrame({"video_path": ["/data/a.mp4", "/data/b.mkv"]}))
    out["quality"]    # one float per input row, same order; higher = better quality
    out["error"]      # empty, or why that row's video could not be scored (its quality is NaN)

Any readable video of any resolution / length works: frames are sampled as at training time (the
``frames`` config stored in model.pt). Relative paths resolve against the caller's cwd. The input may
also be a dict (``{"video_path": [...]}``), a list of dicts or a plain list of paths.

What is refused and what is scored (``models.vqa.video`` decides, the same rules as training):

- refused, the row gets a NaN quality and the reason in ``error``: a missing, empty or unopenable
  file, no decodable frame, frames under 8 px a side (a 1x1 video), a single decodable frame;
- scored, with a warning logged on the ``mokuflow`` logger (the output schema is unchanged: ``error``
  stays for failures): a video of which under 90 % of the announced frames decode (a cut upload, a
  damaged stream) is sampled over the frames that do;
- scored silently: a video shorter than the model's sampling (runs overlap; shorter than one run, its
  last frame repeats).
"""
from __future__ import annotations

from tasks.core.serving import StudyPyfunc, file_path

INPUT_COLUMN = "video_path"
OUTPUT_COLUMN = "quality"


class VQAPyfunc(StudyPyfunc):
    """``video_path`` column in, ``quality`` (higher = better) and ``error`` columns out."""

    inputs = ((INPUT_COLUMN, "string"),)
    outputs = ((OUTPUT_COLUMN, "double"),)
    params = (("batch_size", "long", 8),)

    def load(self, model_file: str) -> None:
        from models.vqa.inference import load_model

        self.model, self.frames_cfg = load_model(model_file)

    def prepare(self, row: dict, params: dict):
        """The row's clip (frames, motion); raises VideoReadError for a refused video (see the module
        docstring), which the core turns into that row's ``error``."""
        from models.vqa.video import read_clip

        return read_clip(file_path(row, INPUT_COLUMN), **self.frames_cfg)

    def infer(self, items: list, params: dict) -> list[list[dict]]:
        import numpy as np
        import torch

        from models.vqa.stdam import to_model_inputs

        dev = torch.device(params["device"])  # the core resolved "auto" (the GPU when there is one)
        model = self.model.to(dev)
        with torch.no_grad():
            frames, motion = to_model_inputs(torch.from_numpy(np.stack([c[0] for c in items])),
                                             torch.from_numpy(np.stack([c[1] for c in items])))
            scores = model(frames.to(dev), motion.to(dev)).float().cpu().numpy().astype(np.float64)
        return [[{OUTPUT_COLUMN: float(s)}] for s in scores]
