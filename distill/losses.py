"""Distillation losses: FGFI masked imitation, CILF (Bernoulli KL + masked MSE) and FGD.

Every function returns a per-image scalar (the caller multiplies the summed loss by the batch size once,
as YOLOv5's ComputeLoss does). Features are (B, C, H, W) with the student already adapted to the
teacher's channels; masks are the (B, 1, H, W) FGFI masks of distill.masks. Computations run in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mse(student_feat: torch.Tensor, teacher_feat: torch.Tensor, mask: torch.Tensor,
               scale: float = 1.0) -> torch.Tensor:
    """scale * sum_{b,c,i,j} mask * (student - teacher)^2 / max(N_p, 1), N_p = mask.sum() (positions).

    (B, C, H, W), (B, C, H, W), (B, 1, H, W) -> scalar. An all-zero mask gives exactly 0 (the graph to
    the student is still built, so every rank of a DDP run touches the same parameters).
    """
    mask = mask.float()
    squared = (student_feat.float() - teacher_feat.float()).pow(2)
    return scale * (squared * mask).sum() / mask.sum().clamp(min=1)


def fgfi_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
              masks: list[torch.Tensor]) -> torch.Tensor:
    """FGFI imitation loss (spec section 4): sum over levels of sum I (S - T)^2 / (2 max(N_p, 1)).

    N_p is counted per level. Lists of (B, C_l, H_l, W_l) adapted student, teacher and (B, 1, H_l, W_l) masks.
    """
    return sum(masked_mse(s, t, m, scale=0.5) for s, t, m in zip(student_feats, teacher_feats, masks))


def bernoulli_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
                 ) -> torch.Tensor:
    """Elementwise KL(Bernoulli(p_t) || Bernoulli(p_s)) * T^2 with p = sigmoid(logit / T), from logits.

    log p = logsigmoid(z), log(1 - p) = logsigmoid(-z): finite for any logit. Same shape as the inputs.
    """
    z_s = student_logits.float() / temperature
    z_t = teacher_logits.float() / temperature
    p_t = torch.sigmoid(z_t)
    kl = p_t * (F.logsigmoid(z_t) - F.logsigmoid(z_s)) + (1 - p_t) * (F.logsigmoid(-z_t) - F.logsigmoid(-z_s))
    return kl * temperature ** 2


def output_kl_loss(student_outputs: list[torch.Tensor], teacher_outputs: list[torch.Tensor],
                   masks: list[torch.Tensor], temperature: float = 3.0) -> torch.Tensor:
    """CILF output KL (spec section 5), summed over levels.

    Per level: raw Detect outputs (B, na, H, W, 5 + nc) of student and teacher; the Bernoulli KL of the
    objectness and each class channel (indices 4:), summed over channels, weighted by the (B, 1, H, W)
    mask broadcast over anchors, summed and divided by max(N_p * na, 1).
    """
    total = 0.0
    for student, teacher, mask in zip(student_outputs, teacher_outputs, masks):
        num_anchors = student.shape[1]
        kl = bernoulli_kl(student[..., 4:], teacher[..., 4:], temperature).sum(-1)  # (B, na, H, W)
        total = total + (kl * mask.float()).sum() / (mask.float().sum() * num_anchors).clamp(min=1)
    return total


def feature_kl_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                    masks: list[torch.Tensor], temperature: float = 3.0) -> torch.Tensor:
    """CILF ``--cilf-kl features``: KL between channel-softmax distributions at each masked position.

    Per level: softmax over C (dim 1) of feature / T for adapted student and teacher (B, C, H, W);
    KL(p_t || p_s) summed over C, times T^2, weighted by the (B, 1, H, W) mask, / max(N_p, 1).
    """
    total = 0.0
    for student, teacher, mask in zip(student_feats, teacher_feats, masks):
        log_p_s = F.log_softmax(student.float() / temperature, dim=1)
        log_p_t = F.log_softmax(teacher.float() / temperature, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1, keepdim=True) * temperature ** 2  # (B, 1, H, W)
        total = total + (kl * mask.float()).sum() / mask.float().sum().clamp(min=1)
    return total


def spatial_attention(feat: torch.Tensor, temperature: float) -> torch.Tensor:
    """A^S = H*W * softmax_(h,w)(mean_c |F| / T): (B, C, H, W) -> (B, H, W)."""
    batch, _, height, width = feat.shape
    logits = feat.abs().mean(1).view(batch, -1) / temperature
    return (height * width * F.softmax(logits, dim=1)).view(batch, height, width)


def channel_attention(feat: torch.Tensor, temperature: float) -> torch.Tensor:
    """A^C = C * softmax_c(mean_(h,w) |F| / T): (B, C, H, W) -> (B, C)."""
    channels = feat.shape[1]
    return channels * F.softmax(feat.abs().mean((2, 3)) / temperature, dim=1)


def _context_branch(channels: int) -> nn.Sequential:
    hidden = channels // 2
    return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, channels, 1))


class FGDLoss(nn.Module):
    """FGD loss of one level (Yang et al., CVPR 2022; spec section 6).

    Learnable parts (parameter names and shapes match the official ``FeatureLoss`` so its state_dict loads
    strictly): ``align`` 1x1 conv C_s -> C_t (only when C_s != C_t, else None); ``conv_mask_s/_t`` 1x1 conv
    C_t -> 1 producing GcBlock context weights (kaiming normal, fan_in, ReLU gain, bias 0);
    ``channel_add_conv_s/_t`` = Sequential(conv C->C/2, LayerNorm([C/2,1,1]), ReLU, conv C/2->C) whose last
    conv starts at zero so R(F) = F initially. All must be trained: put them in the optimizer and checkpoint.

    forward(student_feat (B, C_s, H, W), teacher_feat (B, C_t, H, W), fg_mask (B, H, W), bg_mask (B, H, W))
    -> dict of *weighted* per-image scalars ``fg``, ``bg``, ``at``, ``glb`` (alpha, beta, gamma, lambda).
    """

    def __init__(self, student_channels: int, teacher_channels: int, temperature: float = 0.5,
                 alpha: float = 1e-3, beta: float = 5e-4, gamma: float = 5e-4, lambda_glb: float = 5e-6):
        super().__init__()
        self.temperature, self.alpha, self.beta, self.gamma, self.lambda_glb = temperature, alpha, beta, gamma, lambda_glb
        if student_channels != teacher_channels:
            self.align = nn.Conv2d(student_channels, teacher_channels, 1)
        else:
            self.align = None
        self.conv_mask_s = nn.Conv2d(teacher_channels, 1, 1)
        self.conv_mask_t = nn.Conv2d(teacher_channels, 1, 1)
        self.channel_add_conv_s = _context_branch(teacher_channels)
        self.channel_add_conv_t = _context_branch(teacher_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.conv_mask_s, self.conv_mask_t):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for branch in (self.channel_add_conv_s, self.channel_add_conv_t):
            nn.init.zeros_(branch[-1].weight)
            nn.init.zeros_(branch[-1].bias)

    @staticmethod
    def _global_context(feat: torch.Tensor, conv_mask: nn.Conv2d, channel_add: nn.Sequential) -> torch.Tensor:
        """R(F) = F + channel_add(sum_hw softmax_hw(conv_mask(F)) * F): (B, C, H, W) -> same."""
        batch, channels = feat.shape[:2]
        weights = F.softmax(conv_mask(feat).view(batch, 1, -1), dim=2)  # (B, 1, H*W)
        context = (feat.view(batch, channels, -1) * weights).sum(2).view(batch, channels, 1, 1)
        return feat + channel_add(context)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor, fg_mask: torch.Tensor,
                bg_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        student_feat, teacher_feat = student_feat.float(), teacher_feat.float()
        if self.align is not None:
            student_feat = self.align(student_feat)
        batch = student_feat.shape[0]
        spatial_t = spatial_attention(teacher_feat, self.temperature)  # (B, H, W)
        channel_t = channel_attention(teacher_feat, self.temperature)  # (B, C)
        spatial_s = spatial_attention(student_feat, self.temperature)
        channel_s = channel_attention(student_feat, self.temperature)

        # focal terms weight the squared error by the TEACHER's attention for both student and teacher
        attention = spatial_t[:, None] * channel_t[:, :, None, None]  # (B, C, H, W)
        squared = (student_feat - teacher_feat).pow(2) * attention
        fg = (squared * fg_mask[:, None].float()).sum() / batch
        bg = (squared * bg_mask[:, None].float()).sum() / batch
        at = ((channel_s - channel_t).abs().sum() + (spatial_s - spatial_t).abs().sum()) / batch
        relation_s = self._global_context(student_feat, self.conv_mask_s, self.channel_add_conv_s)
        relation_t = self._global_context(teacher_feat, self.conv_mask_t, self.channel_add_conv_t)
        glb = (relation_s - relation_t).pow(2).sum() / batch
        return {"fg": self.alpha * fg, "bg": self.beta * bg, "at": self.gamma * at, "glb": self.lambda_glb * glb}
