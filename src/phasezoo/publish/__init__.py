"""What leaves the package: the book (:mod:`.book`, notebooks run by :mod:`.notebooks`, checked
in a headless browser by :mod:`.browser`) and zoos in and out of the authors' ray.tune layout (:mod:`.ptmz`)."""
