(function_item name: (identifier) @name body: (block) @body) @scope.function
(impl_item type: (_) @name body: (declaration_list) @body) @scope.class
(trait_item name: (type_identifier) @name body: (declaration_list) @body) @scope.class
(mod_item name: (identifier) @name body: (declaration_list) @body) @scope.class
