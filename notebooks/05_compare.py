# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Phases across zoos and domains
#
# Every zoo of the book side by side (the paper's Figure 4): the phase map, the train loss, the
# test error, the Hessian trace, CKA and mode connectivity, each over the zoo's own load ×
# temperature grid with the phase boundaries drawn on every panel. Test *error* is shown for
# every domain (1 − accuracy, 1 − next-token accuracy, relative L2 error), so that low is good
# in the whole column; the mc panel uses each zoo's phase metric (mc on the loss for GPT).
# Below the figure: the paper's Tables 5–7 for these zoos and the test error per phase.

# %% tags=["parameters"]
zoos = ["digits-resnet18", "digits-vit", "text-gpt", "convection-pinn"]
profile = "mini"
root = "data/zoos"

# %%
import matplotlib.pyplot as plt
from IPython.display import display
import pandas as pd

from phasezoo.analysis.plots import zoo_comparison_figures
from phasezoo.analysis.report import summary_tables, zoo_cells
from phasezoo.spec import load_spec

specs = [load_spec(z) for z in zoos]
for fig in zoo_comparison_figures(specs, profile, root):
    display(fig)
    plt.close(fig)  # shown once, here: not again at the end of the cell

# %% [markdown]
# ## Final metrics per zoo (Tables 5–7)
#
# One table per domain, as in the paper: mean ± std [min, max] over the finished members of
# each zoo, in each task's own metrics (losses in nats; accuracies and the generalisation gap
# as fractions; perplexity as exp of the loss; the PINN's test error relative to the exact
# solution).

# %%
from IPython.display import Markdown, display

for title, table in summary_tables(specs, profile, root).items():
    display(Markdown(f"**{title}**"))
    display(table.set_index("zoo"))

# %% [markdown]
# ## Test error per phase (cell means) and cells per phase

# %%
rows = {}
for spec in specs:
    cells = zoo_cells(spec, profile, root)
    g = cells.groupby("phase")["test_error"]
    rows[spec.name] = {p: f"{m:.3g} ({n})" for p, m, n in zip(g.mean().index, g.mean(), g.size())}
pd.DataFrame(rows).T.fillna("–")
