# Managed by the microapp template: `copier update` replaces this file.
