# Yours to edit: Make targets of your app (included by Makefile; `copier update` leaves it).
.PHONY: purge

purge: ## Delete archived requests past the retention period (audited)
	$(BIN)/python -m app purge
