# Yours to edit: Make targets of your app (included by Makefile; `copier update` leaves it).
# Add a target with `## description` after its name and `make help` lists it, for example:
#
# report: ## Print this week's report
# 	$(BIN)/python -m app report
