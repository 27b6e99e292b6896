# %% [markdown]
# # Weight-space learning: what simple weight statistics predict
#
# A ridge probe on per-tensor weight statistics (mean, variance, quantiles) predicts each model
# property on held-out grid cells (the paper's Table 1), and a logistic probe predicts the phase
# label against the majority-class baseline.
# Re-run: `phasezoo notebook 04_probe -p zoo digits-vit -p seed 1`.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"
device = "auto"
seed = 0

# %%
from phasezoo.spec import load_spec
from phasezoo.wsl.probe import zoo_probe

spec = load_spec(zoo)
properties, phase = zoo_probe(spec, profile, root, seed=seed)
properties

# %%
phase
