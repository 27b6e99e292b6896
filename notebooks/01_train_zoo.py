# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training and performance of a zoo
#
# The distribution of final results (the paper's Tables 5–7) and the learning curves of every
# grid cell.

# %% tags=["parameters"]
zoo = "digits-resnet18"
profile = "mini"
root = "data/zoos"
downloads = ""  # the book sets it: the folder of this zoo's downloads (phasezoo.publish.book)

# %% tags=["remove-input"]
if downloads:  # the zoo's member table and exports, written by `phasezoo book`
    from IPython.display import HTML, display

    from phasezoo.publish.book import downloads_html

    display(HTML(downloads_html(downloads)))

# %%
import matplotlib.pyplot as plt

from phasezoo.analysis.plots import learning_curves
from phasezoo.analysis.report import summary_table
from phasezoo.spec import load_spec
from phasezoo.zoo import zoo_history, zoo_status

spec = load_spec(zoo)
print(spec.description)
print(zoo_status(spec, profile, root))

# %% [markdown]
# ## Final metrics: mean ± std [min, max] over the finished members

# %%
summary_table([spec], profile, root).T

# %% [markdown]
# ## Learning curves (seed means per grid cell)

# %%
history = zoo_history(spec, profile, root)
columns = [c for c in ("train_loss", "test_loss", "test_acc", "test_error", "test_ppl") if c in history]
fig = learning_curves(history, spec.load_axis, spec.temperature_axis, columns[:3], title=f"{zoo}/{profile}")
plt.show()

# %% [markdown]
# ## Every member: configuration, final results, metrics, downstream results and phase

# %%
import pandas as pd
from IPython.display import display

from phasezoo.analysis.table import zoo_table

with pd.option_context("display.max_columns", None, "display.max_rows", None):
    display(zoo_table(spec, profile, root))
