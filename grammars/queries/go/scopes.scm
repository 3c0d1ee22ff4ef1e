(function_declaration name: (identifier) @name body: (block) @body) @scope.function
(method_declaration name: (field_identifier) @name body: (block) @body) @scope.function
(func_literal body: (block) @body) @scope.function
(type_spec name: (type_identifier) @name type: (struct_type (field_declaration_list) @body)) @scope.class
(type_spec name: (type_identifier) @name type: (interface_type) @body) @scope.class
