"""kd_masks.jpg: what each distillation method looks at, for a few images.

One row per image: the image with its boxes, the FGFI mask of every level, the FGD foreground mask (first
level), the teacher's FGD spatial attention (first level), and the channel-mean teacher and student
features (first level) side by side.

Standalone: ``python -m distill.visualize --teacher T.pt --student S.pt --source IMG [--labels TXT]``; without
``--labels`` the teacher's own detections (conf > 0.25) stand in for ground truth.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from distill import masks  # noqa: E402
from distill.losses import spatial_attention  # noqa: E402


@torch.no_grad()
def plot_kd_masks(imgs: torch.Tensor, targets: torch.Tensor, student_feats: list[torch.Tensor],
                  teacher_feats: list[torch.Tensor], anchors: list[torch.Tensor] | None, fname: str | Path,
                  psi: float = 0.5, fgd_temperature: float = 0.5, max_images: int = 4) -> Path:
    """Save the panel grid to ``fname``.

    imgs (B, 3, H, W) float 0-1; targets (N, 6) ``[img, cls, x, y, w, h]`` normalised; features lists of
    (B, C_l, H_l, W_l); anchors (na, 2) grid units per level (teacher's), or None to skip the FGFI panels.
    """
    batch = min(imgs.shape[0], max_images)
    imgs, targets = imgs[:batch].detach().float().cpu(), targets.detach().float().cpu()
    targets = targets[targets[:, 0] < batch]
    student_feats = [f[:batch].detach().float().cpu() for f in student_feats]
    teacher_feats = [f[:batch].detach().float().cpu() for f in teacher_feats]
    shapes = [tuple(f.shape[2:]) for f in teacher_feats]
    fgfi = [] if anchors is None else [masks.fgfi_mask(targets, a.float().cpu(), s, batch, psi)[:, 0]
                                        for a, s in zip(anchors, shapes)]
    fg_mask, _ = masks.fgd_masks(targets, shapes[0], batch)
    attention = spatial_attention(teacher_feats[0], fgd_temperature)
    # (title, values, colour range): masks get a fixed range so an all-lit mask does not render as all-dark
    panels = [(f"FGFI mask L{level}", m, (0, 1)) for level, m in enumerate(fgfi)]
    panels += [("FGD fg mask L0", fg_mask, (0, None)),
               (f"teacher attention L0 (T={fgd_temperature:g})", attention, (None, None)),
               ("teacher mean_c F L0", teacher_feats[0].mean(1), (None, None)),
               ("student mean_c F L0", student_feats[0].mean(1), (None, None))]
    height, width = imgs.shape[2:]
    fig, axes = plt.subplots(batch, len(panels) + 1, figsize=(2.4 * (len(panels) + 1), 2.4 * batch), squeeze=False)
    for b in range(batch):
        ax = axes[b, 0]
        ax.imshow(imgs[b].permute(1, 2, 0).clamp(0, 1).numpy())
        for _, _, x, y, w, h in targets[targets[:, 0] == b].tolist():
            ax.add_patch(plt.Rectangle(((x - w / 2) * width, (y - h / 2) * height), w * width, h * height,
                                       fill=False, edgecolor="lime", linewidth=1))
        ax.set_title("image + targets" if b == 0 else "", fontsize=8)
        for column, (title, values, (low, high)) in enumerate(panels, start=1):
            axes[b, column].imshow(values[b].numpy(), cmap="viridis", interpolation="nearest", vmin=low, vmax=high)
            axes[b, column].set_title(title if b == 0 else "", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fname = Path(fname)
    fname.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fname, dpi=120)
    plt.close(fig)
    return fname


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("kd_masks.jpg for one image", add_help=add_help)
    parser.add_argument("--teacher", required=True, help="teacher checkpoint (ours or upstream .pt)")
    parser.add_argument("--student", required=True, help="student checkpoint (ours or upstream .pt)")
    parser.add_argument("--source", required=True, help="an image file")
    parser.add_argument("--labels", default=None, help="YOLO txt labels of the image (default: teacher detections)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--kd-layers", type=int, nargs="+", default=None, help="layer indices (default: Detect inputs)")
    parser.add_argument("--fgfi-psi", type=float, default=0.5)
    parser.add_argument("--fgd-temperature", type=float, default=0.5)
    parser.add_argument("--out", default="kd_masks.jpg")
    return parser


def main(args: argparse.Namespace) -> Path:
    import cv2
    import numpy as np

    from distill.recorder import FeatureRecorder
    from distill.teacher import load_teacher
    from models import weights  # a script entry point: loads checkpoints through the project's reader
    from utils.letterbox import letterbox
    from utils.nms import non_max_suppression

    image = cv2.imread(str(args.source))
    if image is None:
        raise FileNotFoundError(f"cannot read image {args.source}")
    boxed, ratio, (pad_w, pad_h) = letterbox(image, args.imgsz, auto=False)
    imgs = torch.from_numpy(np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1))).float()[None] / 255
    teacher = load_teacher(args.teacher)
    student = weights.load_model(args.student, fuse=False).eval()
    student_recorder = FeatureRecorder(student, layers=args.kd_layers)
    teacher_recorder = FeatureRecorder(teacher.module, layers=args.kd_layers, detach=True)
    with torch.no_grad(), student_recorder, teacher_recorder:
        student(imgs)
        teacher_pred = teacher(imgs)[0]
    size = imgs.shape[2]
    if args.labels:
        labels = torch.tensor(np.loadtxt(args.labels, ndmin=2), dtype=torch.float32).view(-1, 5)
        height0, width0 = image.shape[:2]
        xy = labels[:, 1:3] * torch.tensor([width0 * ratio[0], height0 * ratio[1]]) + torch.tensor([pad_w, pad_h])
        wh = labels[:, 3:5] * torch.tensor([width0 * ratio[0], height0 * ratio[1]])
        boxes_n = torch.cat((xy, wh), 1) / size
        classes = labels[:, :1]
    else:
        det = non_max_suppression(teacher_pred, conf_thres=0.25)[0]
        xyxy = det[:, :4] / size
        boxes_n = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
        classes = det[:, 5:6]
    targets = torch.cat((torch.zeros(len(boxes_n), 1), classes, boxes_n), 1)
    teacher_feats = teacher_recorder.features
    strides = [size / feat.shape[2] for feat in teacher_feats]
    try:
        anchors = masks.level_anchors(teacher.detect, strides)
    except ValueError:
        anchors = None  # layers at strides without anchors: no FGFI panels
    out = plot_kd_masks(imgs, targets, student_recorder.features, teacher_feats, anchors, args.out,
                        args.fgfi_psi, args.fgd_temperature)
    print(f"saved {out} ({len(targets)} boxes)")
    return out


if __name__ == "__main__":
    main(get_args_parser().parse_args())
