# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Downstream methods across the phases of a zoo
#
# Pruning, Wise-FT between an early checkpoint and the final model, ensembling over seeds and re-basin averaging across
# seeds (and transfer, for the image zoos) over the load × temperature grid, with the phase
# boundaries on top (the paper's Figure 5), then the seed means per phase.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"

# %%
import matplotlib.pyplot as plt

from IPython.display import Markdown, display

from phasezoo.analysis.plots import zoo_phase_figures
from phasezoo.downstream.runner import DOWNSTREAM_COLUMNS
from phasezoo.analysis.report import downstream_by_phase
from phasezoo.spec import load_spec
from phasezoo.analysis.table import zoo_table

spec = load_spec(zoo)
table = zoo_table(spec, profile, root)
metrics = [c for c in DOWNSTREAM_COLUMNS if c in table and table[c].notna().any()]
for title, fig in zoo_phase_figures(spec, profile, root, groups={"Downstream results": ["phase", *metrics]}):
    display(Markdown(f"### {title}"), fig)
    plt.close(fig)  # shown once, here: not again at the end of the cell

# %% [markdown]
# ## Wise-FT along α
#
# Each model's weights between its checkpoint at half of training (α = 0) and its final weights
# (α = 1), `θ(α) = (1 − α) θ_early + α θ_final`; α is chosen on the train loss and the gain
# (`wise_ft_gain`) is the test score there minus the final model's. The lines are phase means
# of the whole curve.

# %%
from phasezoo.downstream.runner import wise_ft_curves
from phasezoo.analysis.plots import wise_ft_plot

curves = wise_ft_curves(spec, profile, root)
if curves.empty:
    print("no Wise-FT curves stored (a one-epoch zoo has no early checkpoint)")
else:
    fig = wise_ft_plot(curves, table, title=f"{spec.name}: Wise-FT along α")
    plt.show()

# %% [markdown]
# ## Seed means per phase
#
# For models with embedding tables (the GPT zoos) `prune_acc_*` prunes them too (the token
# embedding is also the output head) and `prune_noemb_*` leaves them out.

# %%
downstream_by_phase(table)
