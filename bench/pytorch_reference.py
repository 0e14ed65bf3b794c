"""PyTorch side of the captioner benchmark: eager fp32 PyTorch as the popular tutorial
sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning writes "Show, Attend and Tell" (Xu et al. 2015).

Mirrors the tutorial's DecoderWithAttention (sorted batch, at step t only the first
batch_size_t unfinished captions are decoded, pack_padded_sequence cross-entropy plus the
doubly stochastic attention penalty, Adam, gradient clipping by value at 5 as the tutorial's
clip_gradient does) with the changes our Rust/Burn model makes: tanh (not relu) in the additive
attention, tanh after init_h/init_c, and the context written as a bmm. Like a careful user, the
encoder side of the attention, encoder_att(f), is computed once per batch, not at every step.

Runs one row of the table on random data and prints one line of JSON on stdout, the same fields
as `bench --row ROW` (bench/src/main.rs); `--row list` prints the row names. Each line also
gives the row's FLOPs per item, as PyTorch's FlopCounterMode counts them over one step (the
products and convolutions, forward and backward; Burn's side runs the same ones), and the CPU
capability that PyTorch's kernels use. Row `gemm` is a plain square product, the machine's
reachable peak in GFLOP/s.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

ROWS = ["gemm", "1a", "1b", "2-resnet101", "2-lite0", "3", "4-b32", "4-b1"]
GEMM = 2048  # the side of row gemm's square product
BATCH, WIDTH = 32, 20  # captions (or images) per step; padded caption length
PAD, START, END = 0, 1, 2
SIZES = {"sat": (196, 2048, 10000), "flickr": (49, 1280, 1755)}  # positions, channels, vocab


class Attention(nn.Module):
    """Additive (Bahdanau) attention: softmax_p(full_att(tanh(W_f f_p + W_h h)))."""

    def __init__(self, encoder_dim, decoder_dim, attention_dim):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)

    def forward(self, encoder_out, att1, h):
        """`att1` is `encoder_att(encoder_out)`, computed once by the caller."""
        att = self.full_att(torch.tanh(att1 + self.decoder_att(h).unsqueeze(1))).squeeze(2)
        alpha = F.softmax(att, dim=1)
        context = torch.bmm(alpha.unsqueeze(1), encoder_out).squeeze(1)
        return context, alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, vocab_size, encoder_dim, embed_dim=512, attention_dim=512,
                 decoder_dim=512, dropout=0.5):
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.fc = nn.Linear(decoder_dim, vocab_size)

    def init_hidden_state(self, encoder_out):
        mean = encoder_out.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(self, encoder_out, att1, words_emb, h, c):
        """One LSTM step for the rows given: attend, gate the context, LSTMCell."""
        context, alpha = self.attention(encoder_out, att1, h)
        gate = torch.sigmoid(self.f_beta(h))
        h, c = self.decode_step(torch.cat([words_emb, gate * context], dim=1), (h, c))
        return h, c, alpha

    def forward(self, encoder_out, encoded_captions, caption_lengths):
        """Teacher forcing, as the tutorial: sort by length, decode only unfinished captions."""
        batch_size, num_pixels = encoder_out.size(0), encoder_out.size(1)
        caption_lengths, sort_ind = caption_lengths.sort(dim=0, descending=True)
        encoder_out = encoder_out[sort_ind]
        encoded_captions = encoded_captions[sort_ind]
        embeddings = self.embedding(encoded_captions)
        h, c = self.init_hidden_state(encoder_out)
        att1 = self.attention.encoder_att(encoder_out)
        decode_lengths = (caption_lengths - 1).tolist()
        steps = max(decode_lengths)
        predictions = encoder_out.new_zeros(batch_size, steps, self.vocab_size)
        alphas = encoder_out.new_zeros(batch_size, steps, num_pixels)
        for t in range(steps):
            bt = sum(l > t for l in decode_lengths)
            h, c, alpha = self.step(encoder_out[:bt], att1[:bt], embeddings[:bt, t],
                                    h[:bt], c[:bt])
            predictions[:bt, t, :] = self.fc(self.dropout(h))
            alphas[:bt, t, :] = alpha
        return predictions, encoded_captions, decode_lengths, alphas


def make_decoder(size, device):
    _, channels, vocab = SIZES[size]
    decoder = DecoderWithAttention(vocab, channels).to(device)
    with torch.no_grad():
        decoder.fc.bias[END] = -1e4  # <end> is never chosen: beam search always runs 20 steps
    return decoder


def make_captions(vocab, device):
    """32 captions of 15..20 tokens (<start>, <end> included), padded with <pad> to 20."""
    lengths = torch.randint(15, WIDTH + 1, (BATCH,))
    tokens = torch.randint(4, vocab, (BATCH, WIDTH))
    tokens[:, 0] = START
    for i, n in enumerate(lengths.tolist()):
        tokens[i, n - 1] = END
        tokens[i, n:] = PAD
    return tokens.to(device), lengths.to(device)


def caption_loss(decoder, features, tokens, lengths, alpha_c=1.0):
    scores, caps_sorted, decode_lengths, alphas = decoder(features, tokens, lengths)
    targets = caps_sorted[:, 1:]
    scores = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
    targets = pack_padded_sequence(targets, decode_lengths, batch_first=True).data
    loss = F.cross_entropy(scores, targets)
    return loss + alpha_c * ((1.0 - alphas.sum(dim=1)) ** 2).mean()


def train_step(optimizer, params, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn()
    loss.backward()
    nn.utils.clip_grad_value_(params, 5.0)  # the tutorial's clip_gradient(optimizer, 5.)
    optimizer.step()


def resnet101_encoder(device):
    """ResNet-101 without avgpool/fc, pooled to a 14x14 grid: [n, 196, 2048]."""
    resnet = torchvision.models.resnet101(weights=None)
    trunk = nn.Sequential(*list(resnet.children())[:-2], nn.AdaptiveAvgPool2d((14, 14)))
    return trunk.to(device)


def encode(trunk, images):
    out = trunk(images).permute(0, 2, 3, 1)
    return out.reshape(out.size(0), -1, out.size(3))


class Lite0Block(nn.Module):
    """EfficientNet-Lite MBConv: [1x1 expand] -> kxk depthwise -> 1x1 project; ReLU6, no SE."""

    def __init__(self, sd, prefix, stride):
        super().__init__()
        dw = sd[prefix + "_depthwise_conv.weight"]
        mid, k = dw.shape[0], dw.shape[2]
        out_ch, cin = sd[prefix + "_project_conv.weight"].shape[:2]
        self.expand = prefix + "_expand_conv.weight" in sd
        if self.expand:
            cin = sd[prefix + "_expand_conv.weight"].shape[1]
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.residual = stride == 1 and cin == out_ch

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class Lite0(nn.Module):
    """EfficientNet-Lite0 trunk, built from the keys of its state dict, to a 7x7x1280 grid."""

    STRIDE2 = {1, 3, 5, 11}  # first blocks of the stride-2 stages

    def __init__(self, sd):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        self._blocks = nn.ModuleList(
            Lite0Block(sd, f"_blocks.{i}.", 2 if i in self.STRIDE2 else 1) for i in range(n))
        self._conv_head = nn.Conv2d(sd["_conv_head.weight"].shape[1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self.load_state_dict({k: v for k, v in sd.items() if not k.startswith("_fc.")})

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.flatten(2).transpose(1, 2)  # [n, 49, 1280]


@torch.no_grad()
def beam_search(decoder, features, k=3, max_steps=20):
    """Batched beam search: n images x k beams = n*k rows. Returns the best caption per image."""
    n, V = features.size(0), decoder.vocab_size
    dev = features.device
    h, c = decoder.init_hidden_state(features)
    att1 = decoder.attention.encoder_att(features)  # once per image, then expanded to k beams
    f = features.repeat_interleave(k, dim=0)
    att1, h, c = (x.repeat_interleave(k, dim=0) for x in (att1, h, c))
    words = torch.full((n * k,), START, dtype=torch.long, device=dev)
    seqs = words.view(n, k, 1)
    scores = torch.zeros(n, k, device=dev)
    scores[:, 1:] = float("-inf")  # at the first step only beam 0 of each image is live
    base = (torch.arange(n, device=dev) * k).unsqueeze(1)
    best_done = torch.full((n,), float("-inf"), device=dev)
    done_seqs = [None] * n
    for _ in range(max_steps):
        h, c, _ = decoder.step(f, att1, decoder.embedding(words), h, c)
        logp = F.log_softmax(decoder.fc(decoder.dropout(h)), dim=1)
        logp[:, [PAD, START]] = float("-inf")
        cand = (scores.unsqueeze(2) + logp.view(n, k, V)).view(n, k * V)
        top, idx = cand.topk(k, dim=1)
        beam, word = idx // V, idx % V
        rows = (base + beam).view(-1)
        h, c = h[rows], c[rows]
        seqs = torch.cat([seqs.gather(1, beam.unsqueeze(2).expand(-1, -1, seqs.size(2))),
                          word.unsqueeze(2)], dim=2)
        ended = word == END
        if ended.any():  # finished beams leave the live set
            end_score, end_beam = top.masked_fill(~ended, float("-inf")).max(dim=1)
            for i in (end_score > best_done).nonzero().flatten().tolist():
                done_seqs[i] = seqs[i, end_beam[i]]
            best_done = torch.maximum(best_done, end_score)
            top = top.masked_fill(ended, float("-inf"))
        scores, words = top, word.view(-1)
        if bool((best_done >= scores.max(dim=1).values).all()):
            break
    live_best = seqs[torch.arange(n, device=dev), scores.argmax(dim=1)]
    return [done_seqs[i] if done_seqs[i] is not None else live_best[i] for i in range(n)]


def build(row, device):
    """Returns (items per step, step function) for `row`."""
    if row == "gemm":
        a = torch.randn(GEMM, GEMM, device=device)
        b = torch.randn(GEMM, GEMM, device=device)
        return 2 * GEMM**3 / 1e9, lambda: torch.mm(a, b)
    if row in ("1a", "1b"):
        size = "sat" if row == "1a" else "flickr"
        positions, channels, vocab = SIZES[size]
        decoder = make_decoder(size, device).train()
        params = list(decoder.parameters())
        optimizer = torch.optim.Adam(params, lr=4e-4)
        features = torch.rand(BATCH, positions, channels, device=device)
        tokens, lengths = make_captions(vocab, device)
        return BATCH, lambda: train_step(
            optimizer, params, lambda: caption_loss(decoder, features, tokens, lengths))
    if row in ("2-resnet101", "2-lite0"):
        if row == "2-lite0":
            sd = torch.load(os.environ["LITE0_PTH"], map_location="cpu")
            forward = Lite0(sd).to(device).eval()
        else:
            trunk = resnet101_encoder(device).eval()
            forward = lambda x: encode(trunk, x)  # noqa: E731
        images = torch.randn(BATCH, 3, 224, 224, device=device)
        return BATCH, torch.no_grad()(lambda: forward(images))
    if row == "3":
        # Frozen BatchNorm: the encoder stays in eval mode for good (ResNet has no dropout, so
        # eval mode changes only BN, which then uses its running statistics).
        trunk = resnet101_encoder(device).eval()
        for module in list(trunk.children())[:5]:  # conv1, bn1, relu, maxpool, layer1
            module.requires_grad_(False)
        decoder = make_decoder("sat", device).train()
        enc_params = [p for p in trunk.parameters() if p.requires_grad]
        dec_params = list(decoder.parameters())
        optimizer = torch.optim.Adam([{"params": enc_params, "lr": 1e-4},
                                      {"params": dec_params, "lr": 4e-4}])
        images = torch.randn(BATCH, 3, 224, 224, device=device)
        tokens, lengths = make_captions(SIZES["sat"][2], device)
        return BATCH, lambda: train_step(
            optimizer, enc_params + dec_params,
            lambda: caption_loss(decoder, encode(trunk, images), tokens, lengths))
    if row in ("4-b32", "4-b1"):
        n = BATCH if row == "4-b32" else 1
        positions, channels, _ = SIZES["flickr"]
        decoder = make_decoder("flickr", device).eval()
        features = torch.rand(n, positions, channels, device=device)
        return n, lambda: beam_search(decoder, features)
    raise ValueError(f"unknown row {row!r}; rows: {', '.join(ROWS)}")


def plan(args):
    if args.row == "3":
        defaults = (0, 1, 1) if args.quick else (1, 3, 1)
    elif args.row == "4-b1":
        defaults = (1, 3, 3) if args.quick else (2, 5, 10)
    else:
        defaults = (1, 3, 1) if args.quick else (2, 5, 3)
    given = (args.warmup, args.runs, args.iters)
    warmup, runs, iters = (d if g is None else g for g, d in zip(given, defaults))
    return warmup, max(runs, 1), max(iters, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", required=True,
                   help="row to run: " + ", ".join(ROWS) + "; or 'list' to print them")
    p.add_argument("--quick", action="store_true",
                   help="short measurement (warmup 1, runs 3, iters 1; row 3: one untimed-warmup-free "
                        "step; row 4-b1: iters 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run")
    p.add_argument("--warmup", type=int, help="untimed steps before the first run "
                   "(default 2, quick 1; row 3: 1, quick 0)")
    p.add_argument("--runs", type=int, help="timed runs, the median is reported "
                   "(default 5, quick 3; row 3: 3, quick 1)")
    p.add_argument("--iters", type=int, help="steps per timed run "
                   "(default 3, quick 1; row 3: 1; row 4-b1: 10, quick 3)")
    args = p.parse_args()
    if args.row == "list":
        print("\n".join(ROWS))
        return
    if args.row not in ROWS:
        p.error(f"unknown row {args.row!r}; rows: {', '.join(ROWS)}")
    if args.row == "2-lite0" and not os.environ.get("LITE0_PTH"):
        print(json.dumps({"side": "pytorch", "row": "2-lite0", "skipped": "LITE0_PTH not set"}))
        return

    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    warmup, runs, iters = plan(args)
    latency = args.row == "4-b1"
    items, step = build(args.row, device)

    flops = None
    if args.row != "gemm":
        # One more untimed step, counting its FLOPs.
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = counter.get_total_flops() / items
    for _ in range(warmup):
        step()
    values = []
    for r in range(runs):
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        seconds = time.perf_counter() - start
        values.append(1000 * seconds / (iters * items) if latency else iters * items / seconds)
        print(f"run {r + 1}/{runs}: {values[-1]:.3f}", file=sys.stderr)

    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    unit = ("ms/image" if latency else "GFLOP/s" if args.row == "gemm"
            else "captions/s" if args.row in ("1a", "1b") else "images/s")
    print(json.dumps({
        "side": "pytorch", "row": args.row, "unit": unit, "flops_per_item": flops,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "median": statistics.median(values), "runs": values, "peak_mem_mb": round(peak, 1),
        "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
