# %% [markdown]
# # Downstream methods across the phases of a zoo
#
# Pruning, Wise-FT averaging over epochs, ensembling over seeds and re-basin averaging across
# seeds (and transfer, for the image zoos) over the load × temperature grid, with the phase
# boundaries on top (the paper's Figure 5), then the seed means per phase.
# Re-run: `phasezoo notebook 03_downstream -p zoo digits-vit`.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"
device = "auto"

# %%
import matplotlib.pyplot as plt

from phasezoo.plots import zoo_phase_plot
from phasezoo.report import DOWNSTREAM_COLUMNS, downstream_by_phase
from phasezoo.spec import load_spec
from phasezoo.zoo import zoo_table

spec = load_spec(zoo)
table = zoo_table(spec, profile, root)
metrics = [c for c in DOWNSTREAM_COLUMNS if c in table and table[c].notna().any()]
fig = zoo_phase_plot(spec, profile, root, metrics=metrics)
plt.show()

# %% [markdown]
# ## Seed means per phase

# %%
downstream_by_phase(table)
