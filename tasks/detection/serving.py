"""The served detector: image paths in, one row per detection out (the contract in tasks/core/serving.py).

    model = mlflow.pyfunc.load_model("models:/detection@champion")
    out = model.predict(pd.DataFrame({"image_path": ["/data/a.jpg", "/data/b.png"]}))
    # image_path, category_id, category_name, x, y, width, height, score, iou, purity, integrity, error
    model.predict(df, params={"use_dir": False})   # the same detector ranked by classification alone

Boxes are COCO ``x, y, width, height`` in the original image's pixels. ``score`` is the classification
score; ``iou`` the predicted IoU = P·I / (P + I − P·I) from ``purity`` and ``integrity`` (DIR's decoupled
heads on features re-pooled on the refined box). Rows are ranked by score × iou (DIR) or by score
alone (``use_dir=False``, then iou / purity / integrity are empty). An image with no detection has no
row; an unreadable image has one row with its message in ``error``.
"""
from __future__ import annotations

from tasks.core.serving import StudyPyfunc, file_path

INPUT_COLUMN = "image_path"
BOX = ("x", "y", "width", "height")
VALUES = ("score", "iou", "purity", "integrity")


class DetectionPyfunc(StudyPyfunc):
    inputs = ((INPUT_COLUMN, "string"),)
    echo = (INPUT_COLUMN,)
    outputs = (("category_id", "long"), ("category_name", "string"), *((c, "double") for c in BOX),
               *((c, "double") for c in VALUES))
    params = (("use_dir", "boolean", True), ("score_threshold", "double", 0.05),
              ("nms_threshold", "double", 0.5), ("max_detections", "long", 100), ("batch_size", "long", 8))

    def load(self, model_file: str) -> None:
        from models.detection.inference import load_model

        self.detector, self.meta = load_model(model_file)
        self.names = {int(c["id"]): str(c["name"]) for c in self.meta["categories"]}

    def prepare(self, row: dict, params: dict):
        from models.detection.inference import read_image

        return read_image(file_path(row, INPUT_COLUMN), self.meta["image_size"])

    def infer(self, items: list, params: dict) -> list[list[dict]]:
        import torch

        from models.detection.inference import detect_loaded

        variant = "dir" if params.get("use_dir", True) else "none"
        dev = torch.device(params["device"])  # the core resolved "auto" (the GPU when there is one)
        dets = detect_loaded(self.detector.to(dev).eval(), self.meta, items, variants=(variant,), device=dev,
                             score_threshold=float(params["score_threshold"]),
                             nms_threshold=float(params["nms_threshold"]),
                             max_detections=int(params["max_detections"]))[variant]
        out = []
        for det in dets:
            rows = []
            for j in range(len(det["rank"])):
                cid = int(det["category_id"][j])
                rows.append({"category_id": cid, "category_name": self.names.get(cid, str(cid)),
                             **dict(zip(BOX, (float(v) for v in det["bbox"][j]))),
                             **{k: float(det[k][j]) for k in VALUES}})
            out.append(rows)
        return out
