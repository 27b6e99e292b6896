# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Weight-space learning: what simple weight statistics predict
#
# A ridge probe on per-tensor weight statistics (mean, variance, quantiles) predicts each model
# property on held-out grid cells (the paper's Table 1), beside a baseline that sees only the
# hyper-parameters (log load, log temperature, epoch), over 20 random cell splits: mean R², its
# 90% interval over the splits, and the share of splits where the weights beat the baseline.
# A logistic probe predicts the phase label against the majority-class baseline.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"
repeats = 20

# %%
from phasezoo.spec import load_spec
from phasezoo.wsl.probe import zoo_probe

spec = load_spec(zoo)
properties, phase = zoo_probe(spec, profile, root, repeats=repeats)
properties.round(3)

# %%
phase
