# Yours to edit: `copier update` never overwrites this file.
