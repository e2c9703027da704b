"""Plug a dimgen Tokenizer into a small generator written outside dimgen (plain torch).

The Tokenizer maps images to codes that follow a known prior. A generator G(noise, code) trained
on (code, image) pairs can then be driven by codes drawn from that prior: unconditional samples
without any real data. Here G is trained by matching the joint law of (code, image) with a kernel
MMD (no discriminator). Usage: python examples/tokenizer_generator.py [ENCODER_RUN]
"""

import sys
import tempfile

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

import dimgen

torch.manual_seed(0)
torch.set_num_threads(1)
if len(sys.argv) > 1:
    run = sys.argv[1]
else:  # train a quick encoder on the bundled digits (CPU, about half a minute)
    run = dimgen.train_encoder(dimgen.EncoderConfig(epochs=40), tempfile.mkdtemp() + "/enc").path
tok = dimgen.Tokenizer.from_pretrained(run)
digits = load_digits()
x = torch.tensor(digits.images / 16.0, dtype=torch.float32).flatten(1)  # (N, 64) in [0, 1]
y = digits.target
codes = tok.encode(x)  # (N, tok.dim), distributed as tok.prior


def mmd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared MMD with a sum of RBF kernels at three scales."""
    k = lambda u, v: sum(torch.exp(-torch.cdist(u, v).pow(2) / s) for s in (2.0, 8.0, 32.0))  # noqa: E731
    return k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()


G = torch.nn.Sequential(torch.nn.Linear(8 + tok.dim, 128), torch.nn.ReLU(),
                        torch.nn.Linear(128, 64), torch.nn.Sigmoid())  # fmt: skip
opt = torch.optim.Adam(G.parameters(), lr=3e-3)
for _ in range(600):
    i = torch.randint(len(x), (256,))
    fake = G(torch.cat([torch.randn(256, 8), codes[i]], 1))
    loss = mmd(torch.cat([fake, 4 * codes[i]], 1), torch.cat([x[i], 4 * codes[i]], 1))
    opt.zero_grad()
    loss.backward()
    opt.step()

with torch.no_grad():  # label generated digits with a k-NN classifier on the real ones
    knn = KNeighborsClassifier(5).fit(x.numpy(), y)
    cond = knn.predict(G(torch.cat([torch.randn(len(x), 8), codes], 1)).numpy())
    prior_codes = tok.sample_prior(2000, seed=0)  # unconditional: codes drawn from the prior
    uncond = knn.predict(G(torch.cat([torch.randn(2000, 8), prior_codes], 1)).numpy())
consistency = 100 * float(np.mean(cond == y))
classes = np.bincount(uncond, minlength=10) / len(uncond)
print(f"conditional consistency {consistency:.1f}% (chance 10%); unconditional classes "
      f"{np.round(classes, 2).tolist()}")  # fmt: skip
assert consistency > 30 and (classes > 0.01).sum() >= 8, "G ignored the codes"
