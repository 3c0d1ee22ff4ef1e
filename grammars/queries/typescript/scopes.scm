; inherits: javascript
(abstract_class_declaration name: (type_identifier) @name body: (class_body) @body) @scope.class
(interface_declaration name: (type_identifier) @name body: (interface_body) @body) @scope.class
(internal_module name: (identifier) @name body: (statement_block) @body) @scope.class
