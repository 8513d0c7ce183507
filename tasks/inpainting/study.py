"""The interactive video inpainting study ("invisibility cloak"), declared once."""
from tasks.core.study import MAX, Study

STUDY = Study(
    name="inpainting",
    title="Interactive video inpainting: scribble, segment through a shared memory, remove",
    stages={
        "acquire": "acquire videos + masks + scribbles (synthetic with true backgrounds, or a DAVIS / "
                   "YouTube-VOS / object-removal folder)",
        "clean": "unify masks to object ids, remove speckles and holes, check scribbles (cleanup report)",
        "train": "train the shared-memory network: mask decoder + inpainting decoder (Lightning; resumable)",
        "evaluate": "8 robot rounds per test video: J, F, J&F per round, AUC; PSNR / SSIM vs Telea and a "
                    "temporal copy, bootstrap CIs",
        "report": "write the HTML report (J&F per round, restoration table, strips of best / worst videos)",
        "register": "register the model in MLflow; promote to champion if its round-1 J&F beats the current one",
        "cloak": "remove a scribbled object from a video: --video V --scribbles S.json --out DIR",
        "web": "the cloak as a local web page on the champion (scribble, segment, correct, remove): make cloak",
    },
    tools=("cloak", "web"),
    metrics={"jf_round_1": MAX, "jf_last": MAX, "auc_jf": MAX, "J": MAX, "F": MAX,
             "JF": MAX, "hole_psnr": MAX, "hole_ssim": MAX, "frame_psnr": MAX, "frame_ssim": MAX},
    primary_metric="jf_round_1",
    monitor=("val_j", MAX),
    serving="tasks.inpainting.serving:InpaintingPyfunc",
    schema="tasks.inpainting.schema:InpaintingParams",
)
